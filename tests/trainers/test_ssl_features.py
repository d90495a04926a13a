"""SSL encoder features (trainers.features.ssl_presets / ssl_encoder) on tiny random encoders, offline."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from tiny_encoders import save_tiny_weights, tiny_encoder, tiny_preset, write_preset_file

from trainers.audio import read_audio, write_wav
from trainers.features import (
    PRESETS,
    SSL_BUNDLES,
    SSLFeatureExtractor,
    SSLPreset,
    WeightsError,
    extract_features,
    get_preset,
    load_features,
    parse_preset,
    resolve_preset,
)
from trainers.features.cache import _hash_file
from trainers.features.ssl_encoder import build_encoder, default_weights_path
from trainers.torchaudio_compat import torchaudio

SR = 16_000
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch) -> Path:
    """An empty torch hub cache: nothing from the machine's own cache can be found."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path / "torch-home" / "hub" / "checkpoints"


def _clip(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.shape)).astype(np.float32)


@pytest.fixture
def corpus(tmp_path: Path) -> pd.DataFrame:
    rows = []
    for utt_id, seconds in (("a", 1.0), ("b", 1.5), ("long", 3.0), ("short", 0.02)):
        path = tmp_path / "audio" / f"{utt_id}.wav"
        path.parent.mkdir(exist_ok=True)
        write_wav(path, _clip(seconds, seed=len(rows)), SR)
        rows.append({"utt_id": utt_id, "path": str(path), "duration_s": seconds})
    return pd.DataFrame(rows)


def _reference(preset: SSLPreset, weights: Path, wave: torch.Tensor) -> torch.Tensor:
    """What the preset should store for ``wave``: the encoder's own forward pass, layers stacked, pooled."""
    model = build_encoder(preset.encoder)
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    with torch.no_grad():
        hidden, _ = model.extract_features(wave[None])  # layers x (1, T, D)
    stacked = torch.stack([hidden[k - 1][0] for k in preset.layers]).transpose(1, 2)  # (L, D, T)
    return F.avg_pool1d(stacked, preset.time_pool, preset.time_pool, ceil_mode=True)  # (L, D, T')


def test_the_builtin_presets_are_torchaudios_bundles() -> None:
    """Architecture, file name and URL come from torchaudio.pipelines: one owner of those facts."""
    assert set(SSL_BUNDLES) <= set(PRESETS)
    for name, bundle_name in SSL_BUNDLES.items():
        bundle = getattr(torchaudio.pipelines, bundle_name)
        encoder = PRESETS[name].encoder
        assert encoder.file_name == os.path.basename(bundle._path) and encoder.url.endswith("/" + bundle._path)
        assert encoder.model_type == bundle._model_type and encoder.dim == bundle._params["encoder_embed_dim"]
        assert encoder.normalize_waveform == bundle._normalize_waveform
        assert (encoder.hop, encoder.receptive_field, encoder.sample_rate) == (320, 400, 16_000)  # 50 frames/s
        assert PRESETS[name].weights_sha256 is None  # resolved from the file found on each machine


def test_default_disk_use_is_stated_and_bounded() -> None:
    """hours x 3600 x 50 / pool x layers x dim x 2 bytes: IEMOCAP's ~12 h under 10 GB with any default."""
    large = PRESETS["wavlm-large"]
    assert large.bytes_per_hour() == 3600 * 50 // 4 * 6 * 1024 * 2
    assert max(PRESETS[name].bytes_per_hour() for name in SSL_BUNDLES) * 12 < 10e9


@pytest.mark.parametrize(
    ("model_type", "mode"), [("Wav2Vec2", "group_norm"), ("Wav2Vec2", "layer_norm"), ("WavLM", "layer_norm")]
)
def test_cached_features_equal_a_direct_forward_pass(corpus, hub, tmp_path, model_type, mode) -> None:
    """wav2vec 2.0 and HuBERT (one architecture: wav2vec2_model) and WavLM, Base (group_norm) and
    Large (layer_norm) front ends."""
    preset = tiny_preset(encoder=tiny_encoder(model_type=model_type, mode=mode), time_pool=2)
    weights = save_tiny_weights(preset.encoder, tmp_path / "w.pt")
    summary = extract_features(corpus, preset=resolve_preset(preset, weights=weights), cache_dir=tmp_path / "cache")
    assert summary.ok and summary.computed == len(corpus)
    resolved = resolve_preset(preset, weights=weights)
    for row in corpus.itertuples():
        stored = np.load(summary.cache_dir / _hash_file(row.path)[:2] / f"{_hash_file(row.path)}.npy")
        assert stored.dtype == np.float16  # half the bytes of float32
        assert stored.shape == (2, 16, resolved.valid_frames(row.duration_s))  # only the clip's frames
        samples, _ = read_audio(row.path)
        wave = torch.from_numpy(samples)[: resolved.num_samples]  # cut at max_seconds
        wave = wave if wave.numel() >= 400 else F.pad(wave, (0, 400 - wave.numel()))  # receptive field
        expected = _reference(resolved, weights, wave)
        np.testing.assert_allclose(stored.astype(np.float32), expected.numpy(), atol=2e-3, rtol=2e-3)  # float16


def test_the_large_bundles_normalise_the_whole_clip_first(tmp_path) -> None:
    """WAVLM_LARGE and HUBERT_LARGE layer-normalise the waveform (bundle._normalize_waveform): over
    the whole cut clip, before any chunking, as the bundle's model does per input."""
    preset = tiny_preset(encoder=tiny_encoder(normalize=True), time_pool=1, max_seconds=2.0)
    weights = save_tiny_weights(preset.encoder, tmp_path / "w.pt")
    resolved = resolve_preset(preset, weights=weights)
    wave = torch.from_numpy(_clip(1.0)) * 7.0 + 0.5  # level and offset: the normalisation removes them
    stored = SSLFeatureExtractor(resolved, device=CPU)(wave.numpy(), SR).float()
    expected = _reference(resolved, weights, F.layer_norm(wave, wave.shape))
    torch.testing.assert_close(stored, expected, atol=2e-3, rtol=2e-3)


def test_loading_pads_to_the_presets_shape(corpus, hub, tmp_path) -> None:
    preset = tiny_preset(max_seconds=2.0, time_pool=1)
    weights = save_tiny_weights(preset.encoder, tmp_path / "w.pt")
    resolved = resolve_preset(preset, weights=weights)
    extract_features(corpus, preset=resolved, cache_dir=tmp_path / "cache")
    x = load_features(corpus, preset=resolved, cache_dir=tmp_path / "cache")  # (N, L, D, T) float16
    assert x.dtype == torch.float16 and tuple(x.shape[1:]) == resolved.output_shape == (2, 16, 99)
    frames = [resolved.valid_frames(d) for d in corpus["duration_s"]]
    assert frames == [49, 74, 99, 1]  # 50 frames/s; "long" is cut at max_seconds; "short" is one frame
    for row, n in enumerate(frames):
        assert x[row, :, :, n:].abs().sum() == 0 and x[row, :, :, :n].abs().sum() > 0


def test_missing_weights_name_the_file_the_place_and_the_url(hub) -> None:
    preset = PRESETS["wavlm-large"]
    with pytest.raises(WeightsError) as caught:
        resolve_preset(preset)
    message = str(caught.value)
    assert str(hub / "wavlm_large.pth") in message and default_weights_path(preset.encoder) == hub / "wavlm_large.pth"
    assert "https://download.pytorch.org/torchaudio/models/wavlm_large.pth" in message and "--weights" in message


def _broken_files(tmp_path: Path) -> dict[str, Path]:
    good = tiny_encoder()
    files = {"text": tmp_path / "text.pt", "truncated": tmp_path / "truncated.pt"}
    files["text"].write_text("<html>404 not found</html>")
    whole = save_tiny_weights(good, tmp_path / "whole.pt").read_bytes()
    files["truncated"].write_bytes(whole[: len(whole) // 2])
    files["other shapes"] = save_tiny_weights(tiny_encoder(dim=32), tmp_path / "wide.pt")
    state = torch.load(tmp_path / "whole.pt", weights_only=True)
    state.pop(next(iter(state)))
    torch.save(state, tmp_path / "missing-key.pt")
    files["missing key"] = tmp_path / "missing-key.pt"
    torch.save([1, 2, 3], tmp_path / "list.pt")
    files["not a state dict"] = tmp_path / "list.pt"
    return files


def test_broken_weights_are_named(hub, tmp_path) -> None:
    preset = tiny_preset()
    for what, path in _broken_files(tmp_path).items():
        resolved = resolve_preset(preset, weights=path)  # the checksum alone reads any bytes
        with pytest.raises(WeightsError, match=str(path)) as caught:
            SSLFeatureExtractor(resolved, device=CPU)
        assert "https://example.invalid/tiny.pt" in str(caught.value), what


def test_the_cache_key_changes_with_layers_and_weights_not_with_their_path(tmp_path) -> None:
    preset = tiny_preset(layers=(1, 3))
    first = save_tiny_weights(preset.encoder, tmp_path / "a.pt", seed=0)
    copy = tmp_path / "elsewhere" / "a.pt"
    copy.parent.mkdir()
    copy.write_bytes(first.read_bytes())
    other = save_tiny_weights(preset.encoder, tmp_path / "b.pt", seed=1)
    key = resolve_preset(preset, weights=first).fingerprint
    assert resolve_preset(preset, weights=copy).fingerprint == key  # same bytes elsewhere: same cache
    assert resolve_preset(preset, weights=other).fingerprint != key
    assert resolve_preset(tiny_preset(layers=(1, 2)), weights=first).fingerprint != key
    assert resolve_preset(tiny_preset(time_pool=4), weights=first).fingerprint != key
    with pytest.raises(ValueError, match="no weights checksum yet"):
        _ = preset.fingerprint  # an unresolved preset has no cache key


def test_a_recorded_checksum_must_match(tmp_path) -> None:
    """A model trained on some weights refuses others (the bundle records their sha256)."""
    preset = tiny_preset()
    trained = resolve_preset(preset, weights=save_tiny_weights(preset.encoder, tmp_path / "a.pt", seed=0))
    recorded = parse_preset(trained.model_dump(mode="json"))  # as a bundle stores it: no path
    assert recorded.weights_path is None and recorded.weights_sha256 == trained.weights_sha256
    other = save_tiny_weights(preset.encoder, tmp_path / "b.pt", seed=1)
    with pytest.raises(WeightsError, match=f"{other}.*was made with weights of sha256 {trained.weights_sha256}"):
        resolve_preset(recorded, weights=other)
    assert resolve_preset(recorded, weights=tmp_path / "a.pt").fingerprint == trained.fingerprint


def test_chunks_keep_the_frames_of_one_pass_and_equal_a_pass_per_chunk(tmp_path) -> None:
    """A clip longer than a chunk: the frame count and timing are those of one pass, and each chunk's
    frames are exactly the encoder's output on that chunk's samples (the stated bound: attention and
    a group_norm front end see one chunk, so frames differ from a whole-clip pass)."""
    whole = tiny_preset(max_seconds=4.0, time_pool=1, chunk_seconds=30.0)
    chunked = tiny_preset(max_seconds=4.0, time_pool=1, chunk_seconds=1.0)  # 50 frames per chunk
    weights = save_tiny_weights(whole.encoder, tmp_path / "w.pt")
    wave = torch.from_numpy(_clip(3.0))
    one_pass = SSLFeatureExtractor(resolve_preset(whole, weights=weights), device=CPU).encode(wave)  # (L, T, D)
    in_chunks = SSLFeatureExtractor(resolve_preset(chunked, weights=weights), device=CPU).encode(wave)
    assert in_chunks.shape == one_pass.shape == (2, 149, 16)
    torch.testing.assert_close(one_pass, _reference(whole, weights, wave).transpose(1, 2))  # shorter than a chunk
    for first in range(0, 149, 50):
        samples = wave[first * 320 : (first + 50) * 320 + 80]  # the chunk's frames and the receptive field
        expected = _reference(whole, weights, samples).transpose(1, 2)  # (L, T_c, D)
        torch.testing.assert_close(in_chunks[:, first : first + 50], expected)
    assert not torch.allclose(in_chunks, one_pass, atol=1e-3)  # attention across chunks is lost


def test_a_preset_file_round_trips_and_its_errors_name_it(tmp_path) -> None:
    preset = tiny_preset()
    path = write_preset_file(preset, tmp_path / "tiny.json")
    assert get_preset(str(path)) == preset
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "ssl", "name": "x"}')
    with pytest.raises(ValueError, match=f"preset file {bad} is not a valid preset"):
        get_preset(str(bad))
    with pytest.raises(ValueError, match="layers must be in 1..3"):
        tiny_preset(layers=(1, 4))
