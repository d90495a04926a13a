"""Exact float32 for the computations whose small errors DARTS amplifies.

On Ampere and later GPUs torch may run float32 convolutions (cuDNN, on by default) and matrix
products in TF32, with a 10-bit mantissa. The second-order architecture step divides a
difference of two such gradients by ``2 * eps`` (``eps = 0.01 / ||v||``), which turns that
rounding into noise of the size of the term itself. ``exact_float32`` turns TF32 and autocast
off for a block and puts the caller's settings back afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["exact_float32"]


@contextlib.contextmanager
def exact_float32(device: torch.device) -> Iterator[None]:
    """Run the block in true float32 on ``device``: no TF32 (cuDNN or cuBLAS), no autocast."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.autocast(device_type=device.type, enabled=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn
