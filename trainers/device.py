"""Explicit device choice: ``auto`` uses CUDA only when this process was given a GPU.

Nothing in sernas calls ``.cuda()`` on its own; every tensor and module goes to the device
resolved here, from the ``--device`` option or the trial's configuration. This module owns
the device-spec rule: the config, the CLI and ``resolve_device`` all check it here.
"""

from __future__ import annotations

import re

import torch

__all__ = ["DEVICE_SPEC_HELP", "check_device_spec", "resolve_device"]

_SPEC = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
DEVICE_SPEC_HELP = "auto, cpu, cuda or cuda:N"


def check_device_spec(spec: str) -> str:
    """Return ``spec`` if it is a device spec (auto, cpu, cuda, cuda:N), else raise ValueError."""
    if not isinstance(spec, str) or not _SPEC.match(spec):
        raise ValueError(f"device must be one of {DEVICE_SPEC_HELP}, but got {spec!r}.")
    return spec


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available else ``cpu``; ``cuda``/``cuda:N`` must be available."""
    check_device_spec(spec)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(
            f"device {spec!r} was requested, but CUDA is not available on this machine (use --device cpu or auto)."
        )
    return torch.device(spec)
