"""Feature presets: every parameter of one feature computation, and the built-in ones.

``paper-mfcc`` follows Rajapakshe et al. (2023): resample to 32,750 Hz, keep the first 8 s
(zero-padded), 128 MFCC with n_fft 2048 / hop 512 -> 128 x 512 frames, max-pool time by 4 ->
``(1, 128, 128)``. A preset's fingerprint keys its cache directory.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from trainers.features.ssl_presets import SSLPreset, encoder_from_bundle

# Bump when the computation changes in a way the preset's fields do not capture (a different
# resampler, padding rule, pooling...): every fingerprint changes and caches are recomputed.
# 2: band-limited Kaiser-windowed sinc resampling (was torchaudio's default Hann, 6 zero crossings).
FEATURE_ALGORITHM_VERSION = 2


class FeaturePreset(BaseModel):
    """Every parameter of one feature computation; frozen so that its fingerprint is stable.

    The spectrogram always uses a Hann window, ``center=True`` with reflect padding and power 2.
    ``n_frames`` is the number of frames kept before pooling (the first ``n_frames`` of the
    ``1 + samples // hop_length`` that ``center=True`` yields); the output has
    ``n_frames // time_pool`` frames.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    kind: Literal["mfcc", "logmel"]
    sample_rate: int = Field(gt=0)
    max_seconds: float = Field(gt=0)
    n_fft: int = Field(gt=0)
    win_length: int = Field(gt=0)
    hop_length: int = Field(gt=0)
    n_mels: int = Field(gt=0)
    n_mfcc: int | None = Field(default=None, gt=0)
    f_min: float = Field(default=0.0, ge=0)
    f_max: float | None = Field(default=None, gt=0)
    mel_scale: Literal["htk", "slaney"] = "htk"
    mel_norm: Literal["slaney"] | None = None
    log_offset: float = Field(default=1e-6, gt=0)  # logmel: log(mel + log_offset)
    n_frames: int = Field(gt=0)
    time_pool: int = Field(default=1, gt=0)  # max-pool over time, kernel = stride = time_pool

    @model_validator(mode="after")
    def _check_consistent(self) -> FeaturePreset:
        if self.kind == "mfcc" and self.n_mfcc is None:
            raise ValueError(f"preset {self.name!r}: kind 'mfcc' needs n_mfcc, but got None.")
        if self.kind == "logmel" and self.n_mfcc is not None:
            raise ValueError(f"preset {self.name!r}: kind 'logmel' takes no n_mfcc, but got {self.n_mfcc}.")
        if self.n_mfcc is not None and self.n_mfcc > self.n_mels:
            raise ValueError(f"preset {self.name!r}: n_mfcc must be <= n_mels={self.n_mels}, but got {self.n_mfcc}.")
        if self.win_length > self.n_fft:
            raise ValueError(
                f"preset {self.name!r}: win_length must be <= n_fft={self.n_fft}, but got {self.win_length}."
            )
        nyquist = self.sample_rate / 2
        f_max = nyquist if self.f_max is None else self.f_max
        if not self.f_min < f_max <= nyquist:
            raise ValueError(
                f"preset {self.name!r}: need f_min < f_max <= sample_rate / 2 = {nyquist:g}, "
                f"but got f_min={self.f_min:g}, f_max={f_max:g}."
            )
        exact = self.max_seconds * self.sample_rate
        if abs(exact - round(exact)) > 1e-6:
            raise ValueError(
                f"preset {self.name!r}: max_seconds * sample_rate must be a whole number of samples, "
                f"but got {self.max_seconds:g} * {self.sample_rate} = {exact:g}."
            )
        available = 1 + self.num_samples // self.hop_length
        if self.n_frames > available:
            raise ValueError(
                f"preset {self.name!r}: n_frames must be <= {available} (frames in {self.max_seconds:g} s "
                f"with hop {self.hop_length}), but got {self.n_frames}."
            )
        if self.n_frames % self.time_pool:
            raise ValueError(
                f"preset {self.name!r}: n_frames={self.n_frames} must be a multiple of time_pool, "
                f"but got time_pool={self.time_pool}."
            )
        return self

    @property
    def num_samples(self) -> int:
        """Samples at ``sample_rate`` that are analysed (longer audio is cut, shorter zero-padded)."""
        return round(self.max_seconds * self.sample_rate)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """Shape of one utterance's features, ``(1, F, T)`` (channel, frequency bins, frames)."""
        n_bins = self.n_mfcc if self.kind == "mfcc" else self.n_mels
        assert n_bins is not None  # guaranteed by _check_consistent
        return (1, n_bins, self.n_frames // self.time_pool)

    def valid_frames(self, duration_s: float) -> int:
        """Output frames that carry the clip's own signal, not only padding: the frames whose
        centre lies inside the first ``min(duration, max_seconds)`` seconds, after time pooling
        (at least one). Normalisation and masking skip the rest."""
        samples = min(round(duration_s * self.sample_rate), self.num_samples)
        frames = min(self.n_frames, -(-samples // self.hop_length))
        return max(1, -(-frames // self.time_pool))

    def canonical_json(self) -> str:
        """The computation's parameters (name excluded) as sorted, compact JSON."""
        params = self.model_dump(mode="json", exclude={"name"})
        params["algorithm_version"] = FEATURE_ALGORITHM_VERSION
        return json.dumps(params, sort_keys=True, separators=(",", ":"))

    @property
    def fingerprint(self) -> str:
        """12 hex digits identifying the computation.

        The name is excluded: it is a label, and the cache directory carries it anyway
        (``<name>-<fingerprint>``), so the fingerprint alone says whether two presets compute
        the same thing.
        """
        return hashlib.blake2b(self.canonical_json().encode("utf-8"), digest_size=6).hexdigest()


_PRESET_LIST = (
    # Rajapakshe et al. 2023. Mel filters follow librosa's defaults (Slaney scale and area
    # normalisation), which the paper's librosa-based pipeline used.
    FeaturePreset(
        name="paper-mfcc",
        kind="mfcc",
        sample_rate=32_750,
        max_seconds=8.0,
        n_fft=2048,
        win_length=2048,
        hop_length=512,
        n_mels=128,
        n_mfcc=128,
        mel_scale="slaney",
        mel_norm="slaney",
        n_frames=512,  # 1 + 262000 // 512 = 512 frames with center=True
        time_pool=4,  # -> (1, 128, 128)
    ),
    # A common SER front end: 25 ms Hann window, 10 ms hop, 64 HTK-mel bands up to 8 kHz,
    # FFT zero-padded to 512, log(mel power + 1e-6). 8 s -> 801 frames; the first 800 are kept and
    # max-pooled by 4 -> 200 frames of 40 ms, i.e. (1, 64, 200).
    FeaturePreset(
        name="logmel-64",
        kind="logmel",
        sample_rate=16_000,
        max_seconds=8.0,
        n_fft=512,
        win_length=400,
        hop_length=160,
        n_mels=64,
        log_offset=1e-6,
        n_frames=800,
        time_pool=4,
    ),
    # Small and fast, for the demo, CI and quick sweeps on CPU: 16 kHz, first 4.096 s, 32
    # HTK-mel bands, 32 ms window / hop, 128 frames max-pooled by 4 -> (1, 32, 32). A supernet
    # step costs ~16x less than on paper-mfcc's 128 x 128.
    FeaturePreset(
        name="logmel-32",
        kind="logmel",
        sample_rate=16_000,
        max_seconds=4.096,
        n_fft=512,
        win_length=512,
        hop_length=512,
        n_mels=32,
        log_offset=1e-6,
        n_frames=128,
        time_pool=4,
    ),
)


def _ssl_preset(name: str, encoder: str, layers: range) -> SSLPreset:
    """Frozen ``encoder``'s hidden states of ``layers``, first 8 s, time averaged by 4 (12.5 frames/s).

    Every other layer (Base) or every fourth (Large), six in all, so that IEMOCAP (~7 h of the
    four classes, ~12 h in all) fits in a few GB: 12 h x 3600 x 12.5 x 6 x 1024 x 2 B = 6.6 GB
    for the Large models (docs/data.md)."""
    return SSLPreset(
        name=name,
        encoder=encoder_from_bundle(encoder),
        layers=tuple(layers),
        time_pool=4,
        max_seconds=8.0,
        chunk_seconds=30.0,
    )


_SSL_PRESET_LIST = (
    _ssl_preset("wavlm-base-plus", "wavlm-base-plus", range(2, 13, 2)),
    _ssl_preset("wavlm-large", "wavlm-large", range(4, 25, 4)),
    _ssl_preset("hubert-base", "hubert-base", range(2, 13, 2)),
    _ssl_preset("hubert-large", "hubert-large", range(4, 25, 4)),
    _ssl_preset("wav2vec2-base", "wav2vec2-base", range(2, 13, 2)),
)

AnyPreset = FeaturePreset | SSLPreset
"""A spectral preset or a self-supervised encoder's."""

PRESETS: Mapping[str, AnyPreset] = MappingProxyType(
    {preset.name: preset for preset in (*_PRESET_LIST, *_SSL_PRESET_LIST)}
)

_PRESET_ADAPTER: TypeAdapter[AnyPreset] = TypeAdapter(Annotated[FeaturePreset | SSLPreset, Field(discriminator="kind")])


def parse_preset(value: Mapping[str, object]) -> AnyPreset:
    """A preset from its ``model_dump`` (a bundle's, a JSON preset file's): the kind picks the class."""
    return _PRESET_ADAPTER.validate_python(value)


def get_preset(preset: AnyPreset | str | os.PathLike[str]) -> AnyPreset:
    """The named built-in preset, or the preset in a JSON file (a path ending in ``.json``).

    A preset object is returned as is. A JSON file holds a preset's fields (``kind`` picks
    spectral or SSL); its errors name the file."""
    if isinstance(preset, FeaturePreset | SSLPreset):
        return preset
    if isinstance(preset, os.PathLike) or str(preset).endswith(".json"):
        return _preset_file(Path(preset))
    try:
        return PRESETS[preset]
    except KeyError:
        expected = ", ".join(PRESETS)
        raise ValueError(
            f"unknown feature preset {preset!r}; expected one of: {expected}, or a preset file (.json)"
        ) from None


def _preset_file(path: Path) -> AnyPreset:
    try:
        payload = json.loads(path.expanduser().read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"preset file {path} does not exist.") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"preset file {path} is not readable JSON: {error}") from None
    if not isinstance(payload, dict):
        raise ValueError(f"preset file {path} must hold a JSON object, but got {type(payload).__name__}.")
    try:
        return parse_preset(payload)
    except ValidationError as error:
        raise ValueError(f"preset file {path} is not a valid preset: {error}") from None
