"""Explicit device choice: ``auto`` uses CUDA only when this process was given a GPU.

Nothing in sernas calls ``.cuda()`` on its own; every tensor and module goes to the device
resolved here, from the ``--device`` option or the trial's configuration.
"""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available else ``cpu``; ``cuda``/``cuda:N`` must be available."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} was requested, but CUDA is not available on this machine "
                             "(use --device cpu or auto).")
        return torch.device(spec)
    raise ValueError(f"device must be one of auto, cpu, cuda or cuda:N, but got {spec!r}.")
