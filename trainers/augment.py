"""SpecAugment-style masking of training batches (Park et al., 2019: frequency and time masks).

Only the batches that train network weights are masked (the search's weight steps and the
from-scratch training); alpha steps, validation and test never are. Masks are drawn from the
training generator, so a seeded run (and a resumed one) masks the same cells; with no masks
configured nothing is drawn and the random streams are untouched.
"""

from __future__ import annotations

import torch

from trainers.settings import SpecAugment

__all__ = ["spec_augment"]


def _band_mask(n: int, size: int, *, masks: int, width: float, generator: torch.Generator) -> torch.Tensor:
    """``(n, size)`` bool, True inside any of ``masks`` random bands of up to ``width * size`` cells."""
    widest = int(width * size)
    keep = torch.zeros(n, size, dtype=torch.bool)
    if widest < 1:
        return keep
    positions = torch.arange(size)[None, :]  # (1, size)
    for _ in range(masks):
        widths = torch.randint(0, widest + 1, (n, 1), generator=generator)  # (n, 1)
        starts = (torch.rand(n, 1, generator=generator) * (size - widths + 1)).floor().long()  # (n, 1)
        keep |= (positions >= starts) & (positions < starts + widths)
    return keep


def spec_augment(x: torch.Tensor, settings: SpecAugment, *, generator: torch.Generator) -> torch.Tensor:
    """``x`` (B, C, F, T) with random frequency and time bands set to 0 (a new tensor)."""
    if not settings.enabled:
        return x
    b, _, f, t = x.shape
    freq = _band_mask(b, f, masks=settings.freq_masks, width=settings.freq_width, generator=generator)  # (B, F)
    time = _band_mask(b, t, masks=settings.time_masks, width=settings.time_width, generator=generator)  # (B, T)
    masked = (freq[:, None, :, None] | time[:, None, None, :]).to(x.device)  # (B, 1, F, T)
    return x.masked_fill(masked, 0.0)
