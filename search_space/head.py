"""The recurrent stage shared by the supernet, the discrete network and the baseline.

CNN features (B, C, F, T) -> mean over frequency -> (B, T, C) -> batch-first LSTM -> mean over
time -> dropout -> linear -> logits (B, n_classes). The LSTM runs along each sample's own time
axis, so (in eval mode) a sample's logits never depend on the other samples in its batch,
unlike the released code, whose LSTM ran across the batch.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RecurrentHead"]


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean(dim=2)  # (B, C, T): pool over frequency
        x = x.transpose(1, 2)  # (B, T, C)
        out, _ = self.lstm(x)  # (B, T, H)
        out = out.mean(dim=1)  # (B, H): pool over time
        return self.classifier(self.dropout(out))  # (B, n_classes)
