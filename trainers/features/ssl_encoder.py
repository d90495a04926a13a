"""Frozen SSL encoders: finding and checking their weights, and computing an SSL preset's features.

Weights are never downloaded. They are read from ``--weights`` / ``data.weights`` or from torch
hub's cache, under the file name torchaudio's bundle uses (``torch.hub.get_dir()/checkpoints/
<file>``, where ``bundle.get_model()`` leaves them). A missing, unreadable or mismatched file is a
:class:`WeightsError` that names the file, where to put it and the URL it comes from; callers
check it before they write anything.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import pickle
import zipfile
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainers.features.presets import FeaturePreset
from trainers.features.signal import _RESAMPLER
from trainers.features.ssl_presets import EncoderSpec, SSLPreset
from trainers.torchaudio_compat import torchaudio, transforms

__all__ = [
    "SSLFeatureExtractor",
    "WeightsError",
    "check_weights",
    "default_weights_path",
    "load_encoder",
    "resolve_preset",
    "weights_checksum",
]

_HASH_CHUNK = 1 << 22

PresetT = TypeVar("PresetT", FeaturePreset, SSLPreset)


class WeightsError(ValueError):
    """An encoder's weights are missing, unreadable or not the encoder's; the message says what to do."""


def default_weights_path(encoder: EncoderSpec) -> Path:
    """Where torchaudio's ``bundle.get_model()`` caches the weights: ``<torch hub>/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / encoder.file_name


def _where_from(encoder: EncoderSpec) -> str:
    """Where the weights come from and where to put them."""
    default = default_weights_path(encoder)
    source = (
        f"download them from {encoder.url} to {default} (curl -L -o {default} {encoder.url}; that is torch hub's "
        "cache, $TORCH_HOME/hub/checkpoints, where torchaudio's bundle.get_model() puts them)"
        if encoder.url
        else f"this encoder has no known download address; put its weights at {default}"
    )
    return (
        f"{source}, or pass their path with --weights PATH (data.weights in an experiment config); "
        "sernas never downloads weights"
    )


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def weights_checksum(path: str | os.PathLike[str]) -> str:
    """sha256 of a weights file, hex (remembered per process while the file's stat is unchanged)."""
    stat = os.stat(path)
    return _sha256(os.path.abspath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)


def resolve_preset(preset: PresetT, *, weights: str | os.PathLike[str] | None = None) -> PresetT:
    """``preset`` with its weights found and checksummed (other presets are returned as they are).

    ``weights`` (else the preset's ``weights_path``, else torch hub's cache) is the file. A
    preset that records a checksum already (one a model was trained with) must get the same
    weights. Raises :class:`WeightsError` naming the file when it is missing or differs."""
    if not isinstance(preset, SSLPreset):
        return preset
    encoder = preset.encoder
    if weights is not None:
        path = Path(weights).expanduser()
    elif preset.weights_path is not None:
        path = Path(preset.weights_path)
    else:
        path = default_weights_path(encoder)
    if not path.is_file():
        raise WeightsError(
            f"the weights of encoder {encoder.name!r} (preset {preset.name!r}) are not at {path}: "
            f"{_where_from(encoder)}."
        )
    path = path.resolve()
    checksum = weights_checksum(path)
    if preset.weights_sha256 is not None and preset.weights_sha256 != checksum:
        raise WeightsError(
            f"weights file {path} has sha256 {checksum}, but preset {preset.name!r} was made with weights of sha256 "
            f"{preset.weights_sha256}: give the weights it was made with ({_where_from(encoder)})."
        )
    if preset.weights_path == str(path) and preset.weights_sha256 == checksum:
        return preset
    return preset.model_copy(update={"weights_sha256": checksum, "weights_path": str(path)})


def _factory(encoder: EncoderSpec):
    models = torchaudio.models
    return models.wavlm_model if encoder.model_type == "WavLM" else models.wav2vec2_model


def build_encoder(encoder: EncoderSpec) -> nn.Module:
    """The encoder's architecture, randomly initialised (``torchaudio.models``)."""
    return _factory(encoder)(**encoder.params)


def load_encoder(preset: SSLPreset, *, device: torch.device) -> nn.Module:
    """The frozen encoder of ``preset`` (resolved) on ``device``, in eval mode.

    Raises :class:`WeightsError` naming the file when it is not a torch file or not this
    encoder's weights (missing or unexpected keys, other shapes)."""
    preset = resolve_preset(preset)
    path, encoder = Path(str(preset.weights_path)), preset.encoder
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsError(
            f"weights file {path} of encoder {encoder.name!r} is not a readable torch file ({first}): it may be "
            f"truncated or something else; {_where_from(encoder)}."
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(
            f"weights file {path} of encoder {encoder.name!r} holds {type(state).__name__}, not a state dict of "
            f"tensors; {_where_from(encoder)}."
        )
    model = build_encoder(encoder)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        raise WeightsError(
            f"weights file {path} does not fit encoder {encoder.name!r} ({detail[:400]}); {_where_from(encoder)}."
        ) from None
    model.eval().requires_grad_(False)
    return model.to(device)


def check_weights(preset: PresetT, *, weights: str | os.PathLike[str] | None = None) -> PresetT:
    """``preset`` resolved, with its weights loaded once to check them (others as they are): what a
    caller runs before it writes anything, so a broken file stops it with a ``WeightsError``."""
    preset = resolve_preset(preset, weights=weights)
    if isinstance(preset, SSLPreset):
        load_encoder(preset, device=torch.device("cpu"))
    return preset


class SSLFeatureExtractor:
    """An SSL preset's features of one clip: ``(L, D, T)`` float16 on the CPU.

    The clip is resampled to 16 kHz (the Kaiser sinc of the spectral presets), cut at
    ``max_seconds`` (never padded: the cache keeps only frames of audio; a clip shorter than the
    receptive field is padded to it), layer-normalised over the whole clip where the bundle does
    that, and run through the encoder in chunks of ``chunk_frames`` frames: chunk ``c`` gets the
    samples of frames ``c m .. c m + m - 1`` (``m * hop + receptive_field - hop`` samples), so the
    frames have the times and count of one pass over the clip. Each chunk is a separate input to
    the encoder (its self-attention and, for ``group_norm`` front ends, the first layer's
    normalisation see the chunk only), so for a clip longer than a chunk the frames equal the
    encoder's output on each chunk, not on the whole clip. Then the chosen layers are stacked,
    averaged over every ``time_pool`` frames and stored as float16.
    """

    def __init__(self, preset: SSLPreset, *, device: torch.device) -> None:
        self.preset = preset = resolve_preset(preset)
        self.device = device
        self.model = load_encoder(preset, device=device)
        self._resamplers: dict[int, nn.Module] = {}

    def _resample(self, wave: torch.Tensor, source_rate: int) -> torch.Tensor:
        """``wave`` (N,) at 16 kHz, with the spectral presets' resampler, cut soon after ``max_seconds``."""
        target = self.preset.sample_rate
        if source_rate == target:
            return wave
        resampler = self._resamplers.get(source_rate)
        if resampler is None:
            resampler = transforms.Resample(orig_freq=source_rate, new_freq=target, **_RESAMPLER)
            self._resamplers[source_rate] = resampler
        keep = math.ceil(self.preset.max_seconds * source_rate) + source_rate // 20 + 64
        return resampler(wave[:keep].unsqueeze(0)).squeeze(0)

    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(L, T, D)`` float32 of a 16 kHz ``wave`` (S,), chunked, before pooling."""
        p, encoder = self.preset, self.preset.encoder
        wave = wave[: p.num_samples]
        if wave.shape[0] < encoder.receptive_field:
            wave = F.pad(wave, (0, encoder.receptive_field - wave.shape[0]))
        if encoder.normalize_waveform:  # as the bundle's model does, over the whole (cut) clip
            wave = F.layer_norm(wave, wave.shape)
        total = encoder.frames(wave.shape[0])
        m, hop, extra = p.chunk_frames, encoder.hop, encoder.receptive_field - encoder.hop
        top = max(p.layers)
        parts = []
        with torch.inference_mode():
            for first in range(0, total, m):
                chunk = wave[first * hop : (first + m) * hop + extra].to(self.device)  # (S_c,)
                hidden, _ = self.model.extract_features(chunk[None], num_layers=top)  # top x (1, T_c, D)
                parts.append(torch.stack([hidden[k - 1][0] for k in p.layers]).float().cpu())  # (L, T_c, D)
        return torch.cat(parts, dim=1)  # (L, T, D)

    def __call__(self, samples: np.ndarray, sample_rate: int) -> torch.Tensor:
        """Features of mono ``samples`` (N,) at ``sample_rate``: float16 ``(L, D, valid_frames)``."""
        samples = np.asarray(samples)
        if samples.ndim != 1:
            raise ValueError(f"samples must be mono with shape (N,), but got shape {samples.shape}.")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, but got {sample_rate}.")
        wave = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))  # (N,)
        with torch.inference_mode():
            wave = self._resample(wave, sample_rate)
        hidden = self.encode(wave).transpose(1, 2)  # (L, D, T)
        pool = self.preset.time_pool
        if pool > 1:
            hidden = F.avg_pool1d(hidden, kernel_size=pool, stride=pool, ceil_mode=True)  # (L, D, ceil(T / k))
        return hidden.to(torch.float16).contiguous()
