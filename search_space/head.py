"""The recurrent stage shared by the supernet, the discrete network and the baseline.

CNN features (B, C, F, T') -> one feature vector per time step -> batch-first LSTM -> pooling
over each clip's *valid* time steps -> dropout -> linear -> logits (B, n_classes).

:class:`HeadOptions` says what the LSTM reads per step and how its outputs are pooled:

- ``sequence_input="mean-frequency"`` (the default): the CNN output averaged over frequency,
  C features per step. ``"frequency-channels"``: the frequency axis average-pooled
  (adaptively) to ``frequency_bins`` bands K and flattened with the channels, C x K features per
  step, so the LSTM sees where in frequency the energy sits. When the CNN output has exactly K
  bins this is the plain C x F' flatten; K bounds the LSTM's input whatever the input preset
  (paper-mfcc's 128 bins leave F' = 32 after two reductions). ``sequence_projection`` P > 0
  maps the C x K features linearly to P per step first (a low-rank factor of the LSTM's input
  weights: C K P + 4 H P instead of 4 H C K), so the LSTM input stays small.
- ``pooling="mean"`` (the default): the masked mean of the LSTM's outputs over each clip's valid
  steps (H features). ``"stats"``: statistics pooling (x-vectors; Snyder et al. 2018), the masked
  mean and standard deviation over the valid steps concatenated (2 H features); the deviation is
  ``sqrt(var + 1e-5)`` with the population variance, so a 1-step clip gets a finite value (and
  finite gradients) instead of 0/0.

Clips shorter than the feature window end in padding. Given each clip's valid input frames
(``lengths``, of ``input_frames`` T), the head keeps ``ceil(lengths * T' / T)`` steps at its own
resolution (a stride-2 reduction maps frame ``2j`` to ``j``), and the pooling covers only those:
the per-step features mix frequency and channels, never time; the LSTM runs forward, so its
outputs there never saw a padded step; and the padded part reaches neither the recurrent stage's
result nor the pooling, whichever options are set. The LSTM runs along each sample's own time
axis, so (in eval mode) a sample's logits never depend on the other samples in its batch, unlike
the released code, whose LSTM ran across the batch.

A searched sequence stage (issue 28) replaces the LSTM when the head is given a
``sequence_cell`` (a :class:`~search_space.sequence_cell.SequenceCell` of a genotype, or the
supernet's :class:`~search_space.sequence_cell.SearchSequenceCell`): the per-step features are
mapped linearly to the cell's hidden size H, the cell runs over each clip's valid steps, and the
pooling reads its (B, T', H) output; ``lstm_layers`` is then unused. Without one (the default)
the head is the fixed LSTM, parameter for parameter.

Under autocast the projection and the LSTM run in float32: cuDNN would otherwise run the LSTM in
float16 without loss scaling, and recurrent gradients underflow there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import torch
from torch import nn
from torch.nn import functional as F

from search_space.sequence_cell import SearchSequenceCell, SequenceCell

__all__ = [
    "POOLINGS",
    "SEQUENCE_INPUTS",
    "HeadOptions",
    "Pooling",
    "RecurrentHead",
    "SequenceInput",
    "head_lengths",
    "masked_time_mean",
    "masked_time_std",
    "zero_padding",
]

SequenceInput = Literal["mean-frequency", "frequency-channels"]
Pooling = Literal["mean", "stats"]
SEQUENCE_INPUTS: tuple[str, ...] = get_args(SequenceInput)
POOLINGS: tuple[str, ...] = get_args(Pooling)
STD_EPS = 1e-5  # added to the variance under the square root of statistics pooling


@dataclass(frozen=True)
class HeadOptions:
    """What the recurrent stage reads per time step and how it pools a clip (module docstring).

    ``frequency_bins`` and ``sequence_projection`` act with ``sequence_input="frequency-channels"``
    only. The defaults are the head sernas always had, so a genotype trained before these
    options existed builds the same network."""

    sequence_input: SequenceInput = "mean-frequency"
    frequency_bins: int = 4
    sequence_projection: int = 0  # 0: none
    pooling: Pooling = "mean"

    def __post_init__(self) -> None:
        if self.sequence_input not in SEQUENCE_INPUTS:
            raise ValueError(f"sequence_input must be one of {SEQUENCE_INPUTS}, but got {self.sequence_input!r}.")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, but got {self.pooling!r}.")
        for name, value, minimum in (
            ("frequency_bins", self.frequency_bins, 1),
            ("sequence_projection", self.sequence_projection, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, but got {value!r}.")

    @classmethod
    def of(cls, value: HeadOptions | Mapping[str, Any] | None) -> HeadOptions:
        """``value`` as options: itself, built from its dict (a network's ``config``), or the defaults."""
        if value is None:
            return cls()
        if isinstance(value, HeadOptions):
            return value
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(cls.__dataclass_fields__))
            if unknown:
                raise ValueError(f"unknown head options {unknown}; expected some of {list(cls.__dataclass_fields__)}.")
            return cls(**value)
        raise ValueError(f"head must be HeadOptions or a mapping, but got {type(value).__name__}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def step_features(self, channels: int) -> int:
        """Features per time step that the LSTM reads, from a CNN output of ``channels``."""
        if self.sequence_input == "mean-frequency":
            return channels
        return self.sequence_projection or channels * self.frequency_bins

    def pooled_features(self, hidden: int) -> int:
        """Features per clip after pooling ``hidden`` LSTM outputs."""
        return 2 * hidden if self.pooling == "stats" else hidden


def zero_padding(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """``x`` (B, C, F, T) with every frame at or after ``lengths[b]`` set to 0 (None: ``x``).

    Networks apply it to their input, so whatever fills a clip's padding (zeros, a log floor)
    is the same for every clip, and a clip's logits do not depend on it."""
    if lengths is None:
        return x
    frames = torch.arange(x.shape[-1], device=x.device)  # (T,)
    keep = frames[None, :] < lengths.to(x.device)[:, None]  # (B, T)
    return x * keep[:, None, None, :].to(x.dtype)


def head_lengths(lengths: torch.Tensor, *, input_frames: int, frames: int) -> torch.Tensor:
    """Valid steps ``(B,)`` at a resolution of ``frames`` steps, from ``lengths`` of ``input_frames``."""
    scaled = torch.div(lengths.to(torch.int64) * frames + input_frames - 1, input_frames, rounding_mode="floor")
    return scaled.clamp(min=1, max=frames)  # ceil(lengths * frames / input_frames), at least one step


def _step_mask(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T, 1) booleans: step ``t`` of sample ``b`` is among its first ``lengths[b]``."""
    steps = torch.arange(x.shape[1], device=x.device)  # (T,)
    return (steps[None, :] < lengths.to(x.device)[:, None])[:, :, None]  # (B, T, 1)


def masked_time_mean(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``x`` (B, T, H) over the first ``lengths[b]`` steps of each sample -> (B, H)."""
    if lengths is None:
        return x.mean(dim=1)
    mask = _step_mask(x, lengths).to(x.dtype)  # (B, T, 1)
    return (x * mask).sum(dim=1) / mask.sum(dim=1)  # (B, H)


def masked_time_std(x: torch.Tensor, lengths: torch.Tensor | None, *, eps: float = STD_EPS) -> torch.Tensor:
    """``sqrt(var + eps)`` of ``x`` (B, T, H) over the first ``lengths[b]`` steps -> (B, H).

    The population variance (divided by the step count), so one valid step gives ``sqrt(eps)``
    and zero gradient, never 0/0; padded steps are excluded by selection, not by multiplying, so
    whatever they hold (even inf or NaN) reaches neither the value nor its gradient."""
    if lengths is None:
        return (x.var(dim=1, correction=0) + eps).sqrt()  # (B, H)
    mask = _step_mask(x, lengths)  # (B, T, 1)
    count = mask.sum(dim=1).to(x.dtype)  # (B, 1)
    kept = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))  # (B, T, H)
    mean = kept.sum(dim=1, keepdim=True) / count[:, None]  # (B, 1, H)
    centred = torch.where(mask, x - mean, torch.zeros((), dtype=x.dtype, device=x.device))  # (B, T, H)
    return (centred.square().sum(dim=1) / count + eps).sqrt()  # (B, H)


class RecurrentHead(nn.Module):
    """Per-step features of a CNN feature map -> LSTM over time -> pooling -> linear classifier."""

    def __init__(
        self,
        in_channels: int,
        *,
        n_classes: int,
        lstm_hidden: int,
        lstm_layers: int,
        dropout: float,
        options: HeadOptions | None = None,
        sequence_cell: SequenceCell | SearchSequenceCell | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("n_classes", n_classes),
            ("lstm_hidden", lstm_hidden),
            ("lstm_layers", lstm_layers),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, but got {value!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), but got {dropout!r}.")
        self.options = options = options or HeadOptions()
        self.projection = None
        if options.sequence_input == "frequency-channels" and options.sequence_projection > 0:
            self.projection = nn.Linear(in_channels * options.frequency_bins, options.sequence_projection)
        self.sequence_cell = sequence_cell
        if sequence_cell is None:
            self.lstm: nn.Module | None = nn.LSTM(
                options.step_features(in_channels), lstm_hidden, num_layers=lstm_layers, batch_first=True
            )
            width = lstm_hidden
        else:
            self.lstm = None
            self.sequence_in = nn.Linear(options.step_features(in_channels), sequence_cell.hidden)
            width = sequence_cell.hidden
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(options.pooled_features(width), n_classes)

    def sequence(self, x: torch.Tensor) -> torch.Tensor:
        """What the LSTM reads: (B, T', S) from features ``x`` (B, C, F', T'), before any projection."""
        if self.options.sequence_input == "mean-frequency":
            return x.mean(dim=2).transpose(1, 2)  # (B, T', C): pool over frequency
        bins = self.options.frequency_bins
        banded = F.adaptive_avg_pool2d(x, (bins, x.shape[-1]))  # (B, C, K, T'): frequency bands, time untouched
        return banded.permute(0, 3, 1, 2).flatten(2)  # (B, T', C * K), channel-major

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        input_frames: int | None = None,
        sequence_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, n_classes) of features ``x`` (B, C, F, T'); ``lengths`` (B,) counts each
        clip's valid frames among the network input's ``input_frames`` (None: all valid).
        ``sequence_weights`` (E, n_ops): the softmaxed sequence alphas a search cell needs."""
        steps = None
        if lengths is not None:
            steps = head_lengths(lengths, input_frames=input_frames or x.shape[-1], frames=x.shape[-1])  # (B,)
        x = self.sequence(x)  # (B, T', S)
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        with torch.autocast(device_type=x.device.type, enabled=False):
            if self.projection is not None:
                x = self.projection(x)  # (B, T', P): per step, no mixing in time
            if self.lstm is not None:
                out, _ = self.lstm(x)  # (B, T', H), at least float32 even under autocast
            elif isinstance(self.sequence_cell, SearchSequenceCell):
                if sequence_weights is None:
                    raise ValueError("a head with a search sequence cell needs sequence_weights, but got None.")
                out = self.sequence_cell(self.sequence_in(x), sequence_weights, steps)  # (B, T', H)
            else:
                out = self.sequence_cell(self.sequence_in(x), steps)  # (B, T', H)
        pooled = masked_time_mean(out, steps)  # (B, H): pool over the valid steps
        if self.options.pooling == "stats":
            pooled = torch.cat([pooled, masked_time_std(out, steps)], dim=1)  # (B, 2 H)
        return self.classifier(self.dropout(pooled))  # (B, n_classes)
