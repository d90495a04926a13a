"""GPU memory of one process: its share of a shared card, its peak, what it gives back, and
whether the supernet must recompute activations to fit.

Several trials may share one GPU (``tune.resources.gpu: 0.25``: four per card). Ray only
counts the shares; each trial caps its own caching allocator at its share
(``limit_memory``), empties the cache after every fold (``release_cached_memory``; a reused
actor keeps its process, and with it the cache, between trials), and records the peak it held
(``peak_memory_mib``) in its leaderboard row. A CUDA context (~0.3-0.5 GB) comes on top of the
share and is not counted by torch.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Sequence

import torch

__all__ = [
    "PAPER_SHAPE_GIB_PER_SAMPLE",
    "is_out_of_memory",
    "limit_memory",
    "memory_budget_gib",
    "peak_memory_mib",
    "release_cached_memory",
    "reset_peak_memory",
    "should_recompute",
]

PAPER_SHAPE_GIB_PER_SAMPLE = 0.55
"""Activation memory per sample of one supernet forward+backward without recomputation, paper
setting (4 layers, 4 nodes, 8 channels, 8 primitives, 1 x 128 x 128): 4.4 GB at batch 8,
measured on the CPU (``search_space.SuperNet`` docstring); with recomputation 1.4 GB."""
_RECOMPUTE_MARGIN = 2.0  # the estimate must fit twice into the budget before recomputation is turned off


def _index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def limit_memory(device: torch.device, fraction: float) -> None:
    """Cap this process's CUDA caching allocator on ``device`` at ``fraction`` of the card (0 < f <= 1).

    An allocation beyond it raises ``torch.cuda.OutOfMemoryError`` in this process instead of
    taking memory the other trials on the card were promised. No-op on the CPU.
    """
    if device.type != "cuda":
        return
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], but got {fraction}.")
    torch.cuda.set_per_process_memory_fraction(fraction, _index(device))


def memory_budget_gib(device: torch.device) -> float | None:
    """GiB this process may hold on ``device`` (the card times its allocator cap); None on the CPU."""
    if device.type != "cuda":
        return None
    index = _index(device)
    total = torch.cuda.get_device_properties(index).total_memory
    return total * torch.cuda.get_per_process_memory_fraction(index) / 2**30


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(_index(device))


def peak_memory_mib(device: torch.device) -> float | None:
    """The most memory torch's allocator held on ``device`` since the last reset (MiB); None on the CPU."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_reserved(_index(device)) / 2**20


def release_cached_memory(device: torch.device) -> None:
    """Give the allocator's cached blocks back to the card, so the next fold or trial on it starts
    from what it needs (``reuse_actors`` keeps the process between trials)."""
    if device.type != "cuda":
        return
    gc.collect()  # tensors only referenced from cycles (a failed fold's frames) go first
    torch.cuda.empty_cache()


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is torch's CUDA out-of-memory error (it recurs on a retry at the same size)."""
    return isinstance(error, torch.cuda.OutOfMemoryError)


def should_recompute(
    device: torch.device,
    *,
    batch_size: int,
    layers: int,
    nodes: int,
    init_channels: int,
    primitives: int,
    input_shape: Sequence[int],
    budget_gib: float | None = None,
) -> bool:
    """The supernet's default for recomputing activations (``search.recompute: null``).

    Recomputation trades ~30 % of a step's time on a dedicated GPU for 3-4x less activation
    memory. Rule: always on the CPU (memory is the limit there, and it saves 3-4x); on CUDA
    off only when twice the estimated peak without it fits the process's budget (the card
    times its per-process cap, ``limit_memory``). The estimate scales the paper setting's
    measured 0.55 GiB per sample linearly with batch, channels, nodes, layers, primitives and
    input area.
    """
    if device.type != "cuda":
        return True
    budget = memory_budget_gib(device) if budget_gib is None else budget_gib
    if budget is None:
        return True
    area = math.prod(input_shape) / (1 * 128 * 128)
    estimate = (
        PAPER_SHAPE_GIB_PER_SAMPLE
        * batch_size
        * (init_channels / 8)
        * (nodes / 4)
        * (layers / 4)
        * (primitives / 8)
        * area
    )
    return _RECOMPUTE_MARGIN * estimate > budget
