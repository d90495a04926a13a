"""The recurrent stage shared by the supernet, the discrete network and the baseline.

CNN features (B, C, F, T') -> mean over frequency -> (B, T', C) -> batch-first LSTM -> mean
over each clip's *valid* time steps -> dropout -> linear -> logits (B, n_classes).

Clips shorter than the feature window end in padding. Given each clip's valid input frames
(``lengths``, of ``input_frames`` T), the head keeps ``ceil(lengths * T' / T)`` steps at its own
resolution (a stride-2 reduction maps frame ``2j`` to ``j``), and the time average covers only
those: the LSTM runs forward, so its outputs there never saw a padded step, and the padded part
reaches neither the recurrent stage's result nor the pooling. The LSTM runs along each sample's
own time axis, so (in eval mode) a sample's logits never depend on the other samples in its
batch, unlike the released code, whose LSTM ran across the batch.

Under autocast the LSTM runs in float32: cuDNN would otherwise run it in float16 without loss
scaling, and recurrent gradients underflow there.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RecurrentHead", "head_lengths", "masked_time_mean", "zero_padding"]


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


def masked_time_mean(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``x`` (B, T, H) over the first ``lengths[b]`` steps of each sample -> (B, H)."""
    if lengths is None:
        return x.mean(dim=1)
    steps = torch.arange(x.shape[1], device=x.device)  # (T,)
    mask = (steps[None, :] < lengths.to(x.device)[:, None]).to(x.dtype)  # (B, T)
    return (x * mask[:, :, None]).sum(dim=1) / mask.sum(dim=1, keepdim=True)  # (B, H)


class RecurrentHead(nn.Module):
    """LSTM over the time axis of a CNN feature map, then a linear classifier."""

    def __init__(
        self,
        in_channels: int,
        *,
        n_classes: int,
        lstm_hidden: int,
        lstm_layers: int,
        dropout: float,
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
        self.lstm = nn.LSTM(in_channels, lstm_hidden, num_layers=lstm_layers, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(lstm_hidden, n_classes)

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None, *, input_frames: int | None = None
    ) -> torch.Tensor:
        """Logits (B, n_classes) of features ``x`` (B, C, F, T'); ``lengths`` (B,) counts each
        clip's valid frames among the network input's ``input_frames`` (None: all valid)."""
        steps = None
        if lengths is not None:
            steps = head_lengths(lengths, input_frames=input_frames or x.shape[-1], frames=x.shape[-1])  # (B,)
        x = x.mean(dim=2).transpose(1, 2)  # (B, T', C): pool over frequency
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        with torch.autocast(device_type=x.device.type, enabled=False):
            out, _ = self.lstm(x)  # (B, T', H), at least float32 even under autocast
        out = masked_time_mean(out, steps)  # (B, H): pool over the valid steps
        return self.classifier(self.dropout(out))  # (B, n_classes)
