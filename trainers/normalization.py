"""Input normalisation without label or test leakage, over the real frames of each clip.

Features of a short clip end in padding (zeros of the signal, a constant ``log(1e-6)`` after a
log-mel), so statistics are taken over each clip's *valid* frames only (``Split.lengths``) and
padded frames are set to 0 after normalising. Modes (``Normalization``):

- ``train`` (default): per-bin mean and std over the valid frames of the fold's *training*
  utterances, applied to every split (the bundle of an exported model stores them).
- ``utterance``: each clip by its own per-frequency-bin mean and std; uses nothing but the clip,
  but it also removes the clip's level and spectral tilt, which carry emotion (arousal): on the
  demo it left every trial at chance (nested estimate 0.245 vs 0.385 with ``train``).
- ``speaker``: each speaker's clips by that speaker's per-bin mean and std over *all of that
  speaker's audio in the manifest*: every utterance of the speaker, whatever its label, including
  the ones the protocol's class selection drops (``fru``, ``xxx``, ...), test speakers included.
  So a speaker's statistics never depend on which of their clips carry the chosen labels (taking
  them over the fold's selected utterances would let the labels shape the test speakers'
  inputs). ``trainers.fold_data.load_fold_data`` computes them, one speaker at a time
  (``SpeakerStatistics``), and ``Normalizer.fit`` attaches them. That uses each speaker's
  *unlabelled* audio (common in SER, e.g. per-speaker z-normalisation on IEMOCAP); labels never.
  Without attached statistics (``sernas predict``) the clips of one call are taken as all of
  their speaker's audio: the files of one call count as one speaker.
- ``none``: features as computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

import torch

__all__ = [
    "NORMALIZATIONS",
    "SPEAKER_MIN_CLIPS",
    "Normalization",
    "Normalizer",
    "SpeakerStatistics",
    "pooled_statistics",
    "valid_mask",
]

Normalization = Literal["utterance", "train", "speaker", "none"]
NORMALIZATIONS: tuple[str, ...] = ("utterance", "train", "speaker", "none")
_EPS = 1e-5
SPEAKER_MIN_CLIPS = 5
"""Fewer clips of a speaker than this make ``speaker`` statistics little more than the clips' own."""

SpeakerStatistics = Mapping[str, tuple[torch.Tensor, torch.Tensor]]
"""speaker -> (mean, std), each ``(1, C, F, 1)``, over the valid frames of all of the speaker's audio."""


def valid_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """``(N, 1, 1, T)`` float mask, 1 on the first ``lengths[i]`` frames of sample ``i``."""
    return (torch.arange(frames)[None, :] < lengths[:, None]).to(torch.float32)[:, None, None, :]


def _stats(x: torch.Tensor, mask: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of ``x`` (N, C, F, T) over ``dims`` where ``mask`` is 1."""
    count = mask.expand_as(x).sum(dim=dims, keepdim=True).clamp(min=1.0)
    mean = (x * mask).sum(dim=dims, keepdim=True) / count
    var = (((x - mean) * mask) ** 2).sum(dim=dims, keepdim=True) / count
    return mean, var.sqrt()


_CHUNK_ROWS = 256
"""Clips converted to float32 at a time when ``x`` is kept in half precision (SSL features)."""


def pooled_statistics(x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-bin mean and std ``(1, C, F, 1)`` over the valid frames of every clip of ``x`` (N, C, F, T).

    ``x`` in float16 (SSL features, kept at half size) is summed in float32, a chunk of clips at a
    time, so no float32 copy of all of it is ever made."""
    if x.dtype == torch.float32:
        return _stats(x, valid_mask(lengths, x.shape[-1]), (0, 3))
    count = lengths.clamp(max=x.shape[-1]).sum().to(torch.float32).clamp(min=1.0)  # valid frames in all
    total = torch.zeros((1, *x.shape[1:3], 1), dtype=torch.float32)  # (1, C, F, 1)
    for start in range(0, len(x), _CHUNK_ROWS):
        part, mask = _chunk(x, lengths, start)
        total += (part * mask).sum(dim=(0, 3), keepdim=True)
    mean = total / count
    squares = torch.zeros_like(total)
    for start in range(0, len(x), _CHUNK_ROWS):
        part, mask = _chunk(x, lengths, start)
        squares += (((part - mean) * mask) ** 2).sum(dim=(0, 3), keepdim=True)
    return mean, (squares / count).sqrt()


def _chunk(x: torch.Tensor, lengths: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips ``start ..`` of ``x`` in float32 (n, C, F, T) and their valid-frame mask (n, 1, 1, T)."""
    end = start + _CHUNK_ROWS
    return x[start:end].to(torch.float32), valid_mask(lengths[start:end], x.shape[-1])


@dataclass(frozen=True)
class Normalizer:
    """A normalisation mode and its statistics: for ``train`` ``mean``/``std`` ``(1, C, F, 1)``, for
    ``speaker`` (optionally) ``speaker_stats`` of every speaker it will see."""

    mode: Normalization = "train"
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    speaker_stats: SpeakerStatistics | None = None  # never stored in a bundle: they describe the fold's speakers

    def __post_init__(self) -> None:
        if self.mode not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, but got {self.mode!r}.")

    def fit(
        self, x: torch.Tensor, lengths: torch.Tensor, *, speaker_stats: SpeakerStatistics | None = None
    ) -> Normalizer:
        """For ``train``: the statistics of the training features ``x`` (N, C, F, T); for ``speaker``:
        ``speaker_stats`` attached (each speaker's statistics over all of their audio); else itself."""
        if self.mode == "speaker" and speaker_stats is not None:
            return replace(self, speaker_stats=dict(speaker_stats))
        if self.mode != "train":
            return self
        mean, std = pooled_statistics(x, lengths)
        return replace(self, mean=mean, std=std)

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor, speakers: tuple[str, ...] | None = None) -> torch.Tensor:
        """``x`` (N, C, F, T) normalised; padded frames set to 0 (``none`` returns ``x``).

        Half-precision ``x`` (SSL features) is normalised in float32 a chunk of clips at a time and
        returned in its own dtype (z-scores lose nothing that matters in float16)."""
        if self.mode == "none":
            return x
        if x.dtype != torch.float32 and not (self.mode == "speaker" and self.speaker_stats is None):
            out = torch.empty_like(x)  # (N, C, F, T) in x's dtype
            for start in range(0, len(x), _CHUNK_ROWS):
                end = start + _CHUNK_ROWS
                who = None if speakers is None else speakers[start:end]
                out[start:end] = self(x[start:end].to(torch.float32), lengths[start:end], who).to(x.dtype)
            return out
        if x.dtype != torch.float32:  # speaker statistics of the clips themselves: all of them at once
            return self(x.to(torch.float32), lengths, speakers).to(x.dtype)
        mask = valid_mask(lengths, x.shape[-1])
        if self.mode == "utterance":
            mean, std = _stats(x, mask, (3,))
        elif self.mode == "train":
            if self.mean is None or self.std is None:
                raise ValueError("train normalisation needs fitted statistics: call fit() on the training split.")
            mean, std = self.mean, self.std
        else:  # speaker
            if speakers is None or len(speakers) != len(x):
                raise ValueError("speaker normalisation needs the speaker of every utterance.")
            mean, std = torch.empty_like(x[:, :, :, :1]), torch.empty_like(x[:, :, :, :1])  # (N, C, F, 1)
            for speaker in dict.fromkeys(speakers):
                rows = torch.tensor([i for i, s in enumerate(speakers) if s == speaker])
                mean[rows], std[rows] = (
                    part.expand(len(rows), -1, -1, -1) for part in self._speaker(speaker, x, mask, rows)
                )
        return (x - mean) / (std + _EPS) * mask

    def _speaker(
        self, speaker: str, x: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)`` ``(1, C, F, 1)`` of ``speaker``: the attached statistics, or (none attached)
        those of the speaker's clips in ``x``, taken as all of that speaker's audio."""
        if self.speaker_stats is None:
            return _stats(x[rows], mask[rows], (0, 3))
        if speaker not in self.speaker_stats:
            known = sorted(self.speaker_stats)
            raise ValueError(
                f"speaker {speaker!r} has no speaker statistics; they were computed for {len(known)} speaker(s) "
                f"({', '.join(known[:5])}{', ...' if len(known) > 5 else ''})."
            )
        return self.speaker_stats[speaker]

    def state(self) -> dict:
        """What a model bundle stores to normalise as in training (never ``speaker_stats``: a bundle
        meets new speakers, whose statistics come from the clips it is given)."""
        return {
            "mode": self.mode,
            "mean": None if self.mean is None else self.mean.tolist(),
            "std": None if self.std is None else self.std.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict | None) -> Normalizer:
        """A bundle's normaliser; bundles written before normalisation existed used none."""
        if state is None:
            return cls("none")
        tensor = lambda value: None if value is None else torch.tensor(value, dtype=torch.float32)  # noqa: E731
        return cls(state["mode"], mean=tensor(state.get("mean")), std=tensor(state.get("std")))
