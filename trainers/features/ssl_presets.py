"""Presets for self-supervised speech encoders (WavLM, HuBERT, wav2vec 2.0): what is computed.

An :class:`SSLPreset` stores, per utterance, the hidden states of chosen transformer layers of a
frozen encoder, ``(L, D, T)``: L layers, D features, T frames at the encoder's 50 frames per
second (hop 320 samples at 16 kHz), average-pooled over time by ``time_pool``. The encoder is
described by :class:`EncoderSpec`: the keyword arguments of ``torchaudio.models.wav2vec2_model``
/ ``wavlm_model`` and where its weights come from; the built-in ones are read from
``torchaudio.pipelines`` bundles, so architecture, file name and URL have one owner (torchaudio).

Layer ``k`` is the output of transformer layer ``k`` (1-based), i.e. ``model.extract_features(
wave)[0][k - 1]``. The weights' checksum (sha256 of the file) is part of the fingerprint, so
other weights under the same preset name land in another cache directory;
``trainers.features.ssl_encoder.resolve_preset`` fills it in from the file.

Cached files hold only the frames that carry the clip (cut at ``max_seconds``), as float16;
loading pads them with zeros to ``output_shape``. Disk per hour of audio:
``3600 * 50 / time_pool * L * D * 2`` bytes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "SSL_ALGORITHM_VERSION",
    "SSL_BUNDLES",
    "EncoderSpec",
    "SSLPreset",
    "encoder_from_bundle",
]

# Bump when the computation changes in a way the preset's fields do not capture.
SSL_ALGORITHM_VERSION = 1

_TORCHAUDIO_MODELS = "https://download.pytorch.org/torchaudio/models/"

SSL_BUNDLES: dict[str, str] = {
    # encoder name -> torchaudio.pipelines bundle
    "wavlm-base-plus": "WAVLM_BASE_PLUS",
    "wavlm-large": "WAVLM_LARGE",
    "hubert-base": "HUBERT_BASE",
    "hubert-large": "HUBERT_LARGE",
    "wav2vec2-base": "WAV2VEC2_BASE",
}


class EncoderSpec(BaseModel):
    """One encoder architecture and where its weights come from.

    ``params`` are the keyword arguments of ``torchaudio.models.wav2vec2_model`` (model_type
    ``Wav2Vec2``, HuBERT included) or ``wavlm_model`` (``WavLM``). ``normalize_waveform``: the
    bundle layer-normalises each waveform first (the Large models). ``file_name`` is the weights'
    file in torch hub's checkpoint folder; ``url`` where to download it (None: no known source).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    model_type: Literal["Wav2Vec2", "WavLM"]
    params: dict[str, Any]
    normalize_waveform: bool = False
    sample_rate: int = Field(16_000, gt=0)
    file_name: str = Field(min_length=1)
    url: str | None = None

    @model_validator(mode="after")
    def _check_params(self) -> EncoderSpec:
        for key in ("extractor_conv_layer_config", "encoder_embed_dim", "encoder_num_layers"):
            if key not in self.params:
                raise ValueError(f"encoder {self.name!r}: params must give {key}, but it is missing.")
        if os.path.basename(self.file_name) != self.file_name:
            raise ValueError(f"encoder {self.name!r}: file_name must be a bare file name, but got {self.file_name!r}.")
        return self

    @property
    def dim(self) -> int:
        """Features per frame D of every transformer layer."""
        return int(self.params["encoder_embed_dim"])

    @property
    def num_layers(self) -> int:
        return int(self.params["encoder_num_layers"])

    @property
    def conv_layers(self) -> tuple[tuple[int, int], ...]:
        """``(kernel, stride)`` of each convolution of the waveform front end."""
        return tuple((int(k), int(s)) for _, k, s in self.params["extractor_conv_layer_config"])

    @property
    def hop(self) -> int:
        """Samples between frames (320 for every torchaudio bundle: 50 frames/s at 16 kHz)."""
        return math.prod(s for _, s in self.conv_layers)

    @property
    def receptive_field(self) -> int:
        """Samples one frame sees through the convolutions (400 for the bundles)."""
        field, jump = 1, 1
        for kernel, stride in self.conv_layers:
            field += (kernel - 1) * jump
            jump *= stride
        return field

    def frames(self, samples: int) -> int:
        """Frames the convolutions give for ``samples`` samples (torchaudio's length rule)."""
        length = samples
        for kernel, stride in self.conv_layers:
            length = max(0, (length - kernel) // stride + 1)
        return length


@functools.cache
def encoder_from_bundle(name: str) -> EncoderSpec:
    """The encoder of torchaudio's bundle ``SSL_BUNDLES[name]``: its parameters, file name and URL."""
    from trainers.torchaudio_compat import torchaudio

    try:
        bundle = getattr(torchaudio.pipelines, SSL_BUNDLES[name])
    except KeyError:
        raise ValueError(f"unknown SSL encoder {name!r}; expected one of: {', '.join(SSL_BUNDLES)}") from None
    params = json.loads(json.dumps(bundle._params))  # tuples -> lists: the form JSON gives back
    return EncoderSpec(
        name=name,
        model_type=bundle._model_type,
        params=params,
        normalize_waveform=bundle._normalize_waveform,
        sample_rate=int(bundle.sample_rate),
        file_name=os.path.basename(bundle._path),
        url=_TORCHAUDIO_MODELS + bundle._path,
    )


class SSLPreset(BaseModel):
    """Hidden states of ``layers`` of a frozen ``encoder``, first ``max_seconds`` of each clip.

    The encoder runs on chunks of at most ``chunk_seconds`` (aligned to its frames, so the frame
    count and timing equal one pass); each chunk attends only to itself, so for a clip longer than
    a chunk the frames differ from one whole-clip pass (see ``SSLFeatureExtractor``).
    ``time_pool`` averages every k frames (the last window over the frames it has).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    kind: Literal["ssl"] = "ssl"
    encoder: EncoderSpec
    layers: tuple[int, ...] = Field(min_length=1)
    time_pool: int = Field(1, ge=1)
    max_seconds: float = Field(gt=0)
    chunk_seconds: float = Field(30.0, gt=0)
    weights_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    # Where the weights were found on this machine: not part of the computation (excluded from the
    # fingerprint and from model_dump, so bundles never carry a machine's path).
    weights_path: str | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _check_consistent(self) -> SSLPreset:
        n = self.encoder.num_layers
        bad = [k for k in self.layers if not 1 <= k <= n]
        if bad:
            raise ValueError(
                f"preset {self.name!r}: layers must be in 1..{n} (encoder {self.encoder.name!r} has {n}), but got {bad}."
            )
        if len(set(self.layers)) != len(self.layers) or list(self.layers) != sorted(self.layers):
            raise ValueError(
                f"preset {self.name!r}: layers must be increasing and distinct, but got {list(self.layers)}."
            )
        exact = self.max_seconds * self.sample_rate
        if abs(exact - round(exact)) > 1e-6:
            raise ValueError(
                f"preset {self.name!r}: max_seconds * {self.sample_rate} must be a whole number of samples, "
                f"but got {self.max_seconds:g}."
            )
        if self.chunk_frames < 1:
            raise ValueError(
                f"preset {self.name!r}: chunk_seconds must hold at least one frame ({self.encoder.hop} samples), "
                f"but got {self.chunk_seconds:g}."
            )
        return self

    @property
    def sample_rate(self) -> int:
        return self.encoder.sample_rate

    @property
    def num_samples(self) -> int:
        """Samples analysed at most (longer audio is cut)."""
        return round(self.max_seconds * self.sample_rate)

    @property
    def chunk_frames(self) -> int:
        """Frames the encoder computes per chunk."""
        return int(self.chunk_seconds * self.sample_rate) // self.encoder.hop

    @property
    def n_frames(self) -> int:
        """Encoder frames of ``max_seconds`` of audio, before pooling."""
        return max(1, self.encoder.frames(self.num_samples))

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """Shape of one utterance's features as loaded, ``(L, D, T)`` (layers, features, frames)."""
        return (len(self.layers), self.encoder.dim, -(-self.n_frames // self.time_pool))

    @property
    def storage_dtype(self) -> str:
        return "float16"

    def valid_frames(self, duration_s: float) -> int:
        """Output frames of a clip of ``duration_s`` (cut at ``max_seconds``; clips shorter than
        the receptive field are padded to it, so at least one)."""
        samples = min(round(duration_s * self.sample_rate), self.num_samples)
        frames = max(1, self.encoder.frames(max(samples, self.encoder.receptive_field)))
        return -(-frames // self.time_pool)

    def bytes_per_hour(self) -> int:
        """Cache bytes per hour of audio (float16, only the frames that carry audio)."""
        frames = 3600 * self.sample_rate / self.encoder.hop / self.time_pool
        return round(frames * len(self.layers) * self.encoder.dim * 2)

    def canonical_json(self) -> str:
        """The computation's parameters (name and the weights' location excluded), sorted compact JSON."""
        params = self.model_dump(mode="json", exclude={"name"})
        for label in ("name", "url", "file_name"):  # where the weights come from, not what they compute
            params["encoder"].pop(label)
        params["algorithm_version"] = SSL_ALGORITHM_VERSION
        return json.dumps(params, sort_keys=True, separators=(",", ":"))

    @property
    def fingerprint(self) -> str:
        """12 hex digits identifying the computation: encoder, weights' checksum, layers, pooling."""
        if self.weights_sha256 is None:
            raise ValueError(
                f"preset {self.name!r} has no weights checksum yet, so it has no cache key; resolve it first "
                "(trainers.features.resolve_preset)."
            )
        return hashlib.blake2b(self.canonical_json().encode("utf-8"), digest_size=6).hexdigest()
