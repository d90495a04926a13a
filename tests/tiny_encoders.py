"""Tiny randomly initialised SSL encoders (torchaudio.models) and their presets, for offline tests.

Real weights are never downloaded in tests: these encoders have the bundles' waveform front end
(hop 320, receptive field 400: 50 frames/s at 16 kHz) with a few narrow convolutions and two or
three small transformer layers, so a clip takes milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from trainers.features import EncoderSpec, SSLPreset
from trainers.features.ssl_encoder import build_encoder

_CONVS = [(8, 10, 5), (8, 3, 2), (8, 3, 2), (8, 3, 2), (8, 3, 2), (8, 2, 2), (8, 2, 2)]


def tiny_params(*, model_type: str = "Wav2Vec2", layers: int = 3, dim: int = 16, mode: str = "layer_norm") -> dict:
    """Keyword arguments of ``wav2vec2_model`` (HuBERT too) or ``wavlm_model`` for a tiny encoder;
    ``mode`` is the front end's normalisation: ``layer_norm`` (Large models) or ``group_norm`` (Base)."""
    params = dict(
        extractor_mode=mode,
        extractor_conv_layer_config=_CONVS,
        extractor_conv_bias=False,
        encoder_embed_dim=dim,
        encoder_projection_dropout=0.0,
        encoder_pos_conv_kernel=16,
        encoder_pos_conv_groups=4,
        encoder_num_layers=layers,
        encoder_num_heads=2,
        encoder_attention_dropout=0.0,
        encoder_ff_interm_features=2 * dim,
        encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.0,
        encoder_layer_norm_first=False,
        encoder_layer_drop=0.0,
        aux_num_out=None,
    )
    if model_type == "WavLM":
        params.update(encoder_num_buckets=32, encoder_max_distance=64)
    return json.loads(json.dumps(params))  # tuples as lists, as a preset file gives them back


def tiny_encoder(
    *, model_type: str = "Wav2Vec2", layers: int = 3, dim: int = 16, normalize: bool = False, mode: str = "layer_norm"
) -> EncoderSpec:
    return EncoderSpec(
        name=f"tiny-{model_type.lower()}",
        model_type=model_type,
        params=tiny_params(model_type=model_type, layers=layers, dim=dim, mode=mode),
        normalize_waveform=normalize,
        file_name=f"tiny-{model_type.lower()}.pt",
        url="https://example.invalid/tiny.pt",
    )


def save_tiny_weights(encoder: EncoderSpec, path: Path, *, seed: int = 0) -> Path:
    """Random weights of ``encoder`` (seeded) saved as a plain state dict, as torchaudio's files are."""
    torch.manual_seed(seed)
    model = build_encoder(encoder)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def tiny_preset(
    *,
    name: str = "tiny-ssl",
    encoder: EncoderSpec | None = None,
    layers: tuple[int, ...] = (1, 3),
    time_pool: int = 2,
    max_seconds: float = 2.0,
    chunk_seconds: float = 30.0,
) -> SSLPreset:
    return SSLPreset(
        name=name,
        encoder=encoder or tiny_encoder(),
        layers=layers,
        time_pool=time_pool,
        max_seconds=max_seconds,
        chunk_seconds=chunk_seconds,
    )


def write_preset_file(preset: SSLPreset, path: Path) -> Path:
    """The preset as a JSON preset file (``--preset FILE.json``, ``data.preset``)."""
    path.write_text(preset.model_dump_json(indent=2))
    return path
