"""Seeds and RNG states: the same seed gives the same genotype and metrics on CPU, and a resumed
fold continues with the random streams it would have had without the interruption.

On CUDA, kernels chosen for speed (cuDNN autotuning, atomic-add reductions) make runs differ in
the last bits, which DARTS' finite differences and argmax amplify into different genotypes.
``reproducible_mode`` trades speed for "same seed, same genotype" on one GPU model and software
stack (docs/gpu.md states its cost). RNG states are saved and restored for the device in use
only: a CPU run never initialises CUDA, and a checkpoint resumes on a host with fewer GPUs.
"""

from __future__ import annotations

import os
import random
import warnings
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU generator for data order (seeded too)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


CUBLAS_WORKSPACE_CONFIG = ":4096:8"  # what cuBLAS needs for deterministic results (CUDA >= 10.2)


def reproducible_mode(device: torch.device) -> None:
    """Deterministic algorithms for the rest of this process (``experiment.reproducible``).

    ``torch.use_deterministic_algorithms`` (warn-only: an op without a deterministic CUDA kernel
    warns instead of stopping a search), cuDNN deterministic and not autotuned, and
    ``CUBLAS_WORKSPACE_CONFIG``, which cuBLAS reads when its first handle is made: call this
    before the process's first CUDA matrix product. Costs speed on CUDA (docs/gpu.md); on the
    CPU, where runs are reproducible already, it changes nothing measurable.
    """
    if device.type == "cuda" and torch.cuda.is_initialized() and os.environ.get("CUBLAS_WORKSPACE_CONFIG") is None:
        warnings.warn(
            "reproducible mode was turned on after CUDA started; cuBLAS may not be deterministic in this process",
            stacklevel=2,
        )
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def capture_rng_state(
    generator: torch.Generator | None = None, *, device: torch.device | None = None
) -> dict[str, Any]:
    """Every RNG state as tensors and plain Python values (loadable with ``weights_only=True``);
    the CUDA generator of ``device`` only when it is a CUDA device."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if device is not None and torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng_state(
    state: dict[str, Any], generator: torch.Generator | None = None, *, device: torch.device | None = None
) -> None:
    """Put back ``capture_rng_state``'s states; the CUDA one only onto a CUDA ``device`` (a run
    resumed on the CPU, or on another GPU of a smaller host, takes what it can use)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached"],
        )
    )
    torch.set_rng_state(state["torch"])
    cuda_state = state.get("cuda")
    if cuda_state is not None and device is not None and torch.device(device).type == "cuda":
        if isinstance(cuda_state, (list, tuple)):  # older checkpoints: every visible GPU's state
            cuda_state = cuda_state[0] if cuda_state else None
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state, device)
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])
