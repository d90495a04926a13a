"""The input stage for stacked encoder layers: a learned weighted sum, then a projection.

Self-supervised speech encoders (WavLM, HuBERT, wav2vec 2.0) give one ``(D, T)`` map per
transformer layer; which layer suits emotion differs per encoder, so, as in SUPERB (Yang et al.,
2021), the network learns a softmax weight per layer and sums them. A linear map of the D
features to ``width`` per frame then gives the ``(B, 1, width, T)`` map the CNN cells take in
place of a spectrogram. Both act on each frame alone (never across time), so a padded frame
never reaches a valid one; the networks zero the padded frames again after this stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from search_space.head import zero_padding

__all__ = ["LayerMix", "LayerMixOptions", "network_input"]


@dataclass(frozen=True)
class LayerMixOptions:
    """``layers`` L stacked ``dim`` D-feature maps in, a ``(1, width, T)`` map out."""

    layers: int
    dim: int
    width: int = 64

    def __post_init__(self) -> None:
        for name in ("layers", "dim", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"frontend {name} must be an int >= 1, but got {value!r}.")

    @classmethod
    def of(cls, value: LayerMixOptions | Mapping[str, Any] | None) -> LayerMixOptions | None:
        """``value`` as options: itself, built from its dict (a network's ``config``), or None."""
        if value is None or isinstance(value, LayerMixOptions):
            return value
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(cls.__dataclass_fields__))
            if unknown:
                raise ValueError(f"unknown frontend options {unknown}; expected {list(cls.__dataclass_fields__)}.")
            return cls(**value)
        raise ValueError(f"frontend must be LayerMixOptions, a mapping or None, but got {type(value).__name__}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LayerMix(nn.Module):
    """``(B, L, D, T)`` -> softmax-weighted sum over L -> linear D -> width -> ``(B, 1, width, T)``."""

    def __init__(self, options: LayerMixOptions) -> None:
        super().__init__()
        self.options = options
        self.layer_logits = nn.Parameter(torch.zeros(options.layers))  # (L,): equal weights at the start
        self.projection = nn.Linear(options.dim, options.width)

    def layer_weights(self) -> torch.Tensor:
        """The current weight of each layer, ``(L,)``, summing to 1."""
        return torch.softmax(self.layer_logits, dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.options
        if x.dim() != 4 or x.shape[1] != o.layers or x.shape[2] != o.dim:
            raise ValueError(f"LayerMix expects input of shape (B, {o.layers}, {o.dim}, T), but got {tuple(x.shape)}.")
        weights = self.layer_weights().to(x.dtype)  # (L,)
        mixed = torch.einsum("l,bldt->btd", weights, x)  # (B, T, D)
        return self.projection(mixed).transpose(1, 2).unsqueeze(1)  # (B, 1, width, T)


def network_input(x: torch.Tensor, lengths: torch.Tensor | None, frontend: LayerMix | None) -> torch.Tensor:
    """What a network's stem reads: ``x`` (B, C, F, T) with padded frames zeroed, through
    ``frontend`` (when given: ``(B, 1, width, T)``, padded frames zeroed again, since the
    projection's bias would fill them)."""
    x = zero_padding(x, lengths)
    if frontend is None:
        return x
    return zero_padding(frontend(x), lengths)  # (B, 1, width, T)
