"""Tests for trainers.features on tiny generated WAVs (never on corpus downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from trainers.audio import read_audio, write_wav
from trainers.features import (
    PRESETS,
    FeatureExtractor,
    FeaturePreset,
    FeaturesNotFoundError,
    default_cache_dir,
    extract_features,
    feature_path,
    get_preset,
    load_features,
)
from trainers.features import cache as feature_cache
from trainers.features import extraction as feature_extraction

SR = 16_000


def _tone(frequency: float, seconds: float, sample_rate: int = SR, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = 0.3 * np.sin(2 * np.pi * frequency * t)
    if noise:
        wave = wave + noise * np.random.default_rng(seed).standard_normal(t.shape)
    return wave.astype(np.float32)


@pytest.fixture(autouse=True)
def single_torch_thread():
    """Extraction runs torch on one thread; do the same here (faster on small CPUs, same bits)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def corpus(tmp_path: Path) -> pd.DataFrame:
    """Six small mono WAVs: tones and noise at 16 kHz, one at 8 kHz, one > 8 s, one of 0.1 s."""
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    clips = {
        "tone440": (_tone(440, 1.0), SR),
        "tone880": (_tone(880, 1.0), SR),
        "noise": (_tone(200, 1.5, noise=0.2, seed=1), SR),
        "tone8k": (_tone(300, 1.0, sample_rate=8_000), 8_000),
        "long": (_tone(523, 9.0, noise=0.05, seed=2), SR),
        "short": (_tone(660, 0.1), SR),
    }
    rows = []
    for utt_id, (samples, sample_rate) in clips.items():
        path = audio_dir / f"{utt_id}.wav"
        write_wav(path, samples, sample_rate)
        rows.append({"utt_id": utt_id, "path": str(path)})
    return pd.DataFrame(rows)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _variant(preset_name: str, **changes) -> FeaturePreset:
    """A validated copy of a built-in preset (``model_copy(update=...)`` would skip validation)."""
    return FeaturePreset(**{**PRESETS[preset_name].model_dump(), **changes})


def _extract(manifest: pd.DataFrame, cache_dir: Path, preset: FeaturePreset | str = "paper-mfcc", **kwargs):
    return extract_features(manifest, preset=preset, cache_dir=cache_dir, **kwargs)


# ---------------------------------------------------------------------------------------- presets


def test_builtin_presets_have_documented_shapes() -> None:
    assert PRESETS["paper-mfcc"].output_shape == (1, 128, 128)
    assert PRESETS["logmel-64"].output_shape == (1, 64, 200)


def test_get_preset_names_the_choices() -> None:
    assert get_preset("paper-mfcc") is PRESETS["paper-mfcc"]
    assert get_preset(PRESETS["logmel-64"]) is PRESETS["logmel-64"]
    expected = r"unknown feature preset 'mfcc'; expected one of: paper-mfcc, logmel-64"
    with pytest.raises(ValueError, match=expected):
        get_preset("mfcc")


def test_fingerprint_depends_on_parameters_not_name() -> None:
    paper = PRESETS["paper-mfcc"]
    renamed = _variant("paper-mfcc", name="my-mfcc")
    assert renamed.fingerprint == paper.fingerprint
    changed = _variant("paper-mfcc", hop_length=256, n_frames=1024)
    assert changed.fingerprint != paper.fingerprint
    assert len(paper.fingerprint) == 12
    # Cached features on every node are keyed by this value: change it only on purpose
    # (bump FEATURE_ALGORITHM_VERSION when the computation changes).
    assert paper.fingerprint == "4d6ed2961acd"


def test_preset_rejects_inconsistent_parameters() -> None:
    with pytest.raises(ValueError, match="n_frames must be <= 512"):
        _variant("paper-mfcc", n_frames=516)
    with pytest.raises(ValueError, match="multiple of time_pool"):
        _variant("paper-mfcc", n_frames=510)
    with pytest.raises(ValueError, match="n_mfcc must be <= n_mels"):
        _variant("paper-mfcc", n_mfcc=129)
    with pytest.raises(ValueError, match="kind 'logmel' takes no n_mfcc"):
        _variant("logmel-64", n_mfcc=13)
    with pytest.raises(ValueError, match="whole number of samples"):
        _variant("paper-mfcc", max_seconds=8.00001)
    with pytest.raises(ValueError, match="extra"):
        _variant("paper-mfcc", window="hamming")
    with pytest.raises(ValueError, match="frozen"):
        PRESETS["paper-mfcc"].hop_length = 256


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SERNAS_CACHE_DIR", str(tmp_path / "somewhere"))
    assert default_cache_dir() == tmp_path / "somewhere"
    monkeypatch.delenv("SERNAS_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "sernas" / "features"


# ------------------------------------------------------------------------------------- extractor


@pytest.mark.parametrize("preset_name", ["paper-mfcc", "logmel-64"])
def test_extractor_shape_dtype_finite(corpus: pd.DataFrame, preset_name: str) -> None:
    extractor = FeatureExtractor(preset_name)
    outputs = {}
    for utt_id, path in zip(corpus["utt_id"], corpus["path"]):
        samples, sample_rate = read_audio(path)
        output = extractor(samples, sample_rate)
        assert output.shape == PRESETS[preset_name].output_shape, utt_id
        assert output.dtype == torch.float32
        assert torch.isfinite(output).all(), utt_id
        outputs[utt_id] = output
    assert not torch.allclose(outputs["tone440"], outputs["tone880"])
    assert not torch.allclose(outputs["tone440"], outputs["noise"])


def test_paper_mfcc_has_exactly_512_frames_before_pooling() -> None:
    unpooled = _variant("paper-mfcc", time_pool=1)
    output = FeatureExtractor(unpooled)(_tone(440, 3.0), SR)
    assert output.shape == (1, 128, 512)
    pooled = FeatureExtractor("paper-mfcc")(_tone(440, 3.0), SR)
    assert torch.equal(pooled, output.reshape(1, 128, 128, 4).amax(dim=-1))


def test_only_the_first_max_seconds_count() -> None:
    # At the preset's own rate the cut is exact.
    rate = PRESETS["paper-mfcc"].sample_rate
    extractor = FeatureExtractor("paper-mfcc")
    first = _tone(523, 8.0, sample_rate=rate, noise=0.05, seed=3)
    longer = np.concatenate([first, _tone(100, 2.0, sample_rate=rate)])
    assert torch.equal(extractor(longer, rate), extractor(first, rate))
    # When resampling, the sinc kernel reaches a few samples past 8 s; nothing later matters.
    first = _tone(523, 8.5, noise=0.05, seed=3)
    longer = np.concatenate([first, _tone(100, 2.0)])
    assert torch.equal(extractor(longer, SR), extractor(first, SR))


def test_short_audio_is_zero_padded() -> None:
    extractor = FeatureExtractor("logmel-64")
    short = _tone(660, 0.1)
    padded = np.concatenate([short, np.zeros(8 * SR - short.size, dtype=np.float32)])
    assert torch.equal(extractor(short, SR), extractor(padded, SR))


def _torchaudio_reference(preset: FeaturePreset, samples: np.ndarray) -> torch.Tensor:
    """The preset computed with torchaudio's transforms on every frame (samples at its rate)."""
    from trainers.torchaudio_compat import transforms

    wave = torch.nn.functional.pad(torch.from_numpy(samples), (0, max(0, preset.num_samples - samples.size)))
    mel_kwargs = dict(
        n_fft=preset.n_fft,
        win_length=preset.win_length,
        hop_length=preset.hop_length,
        f_min=preset.f_min,
        f_max=preset.f_max,
        n_mels=preset.n_mels,
        power=2.0,
        center=True,
        pad_mode="reflect",
        norm=preset.mel_norm,
        mel_scale=preset.mel_scale,
    )
    if preset.kind == "mfcc":
        transform = transforms.MFCC(
            sample_rate=preset.sample_rate,
            n_mfcc=preset.n_mfcc,
            dct_type=2,
            norm="ortho",
            log_mels=False,
            melkwargs=mel_kwargs,
        )
        spec = transform(wave[: preset.num_samples].unsqueeze(0))
    else:
        transform = transforms.MelSpectrogram(sample_rate=preset.sample_rate, **mel_kwargs)
        spec = torch.log(transform(wave[: preset.num_samples].unsqueeze(0)) + preset.log_offset)
    spec = spec[..., : preset.n_frames]
    return torch.nn.functional.max_pool1d(spec, kernel_size=preset.time_pool, stride=preset.time_pool)


@pytest.mark.parametrize("preset_name", ["paper-mfcc", "logmel-64", "logmel-32"])
def test_skipping_padding_frames_matches_full_transform_bit_for_bit(preset_name: str) -> None:
    # The extractor skips the STFT of frames that see only zero padding; lengths around the
    # edges of that rule (and logmel-32, whose window is a whole number of hops) must not show it.
    preset = PRESETS[preset_name]
    extractor = FeatureExtractor(preset)
    total, n_fft, hop = preset.num_samples, preset.n_fft, preset.hop_length
    lengths = [
        1,
        n_fft // 2,
        n_fft // 2 + 1,
        hop * 7 + 3,
        total - n_fft - hop,
        total - n_fft,
        total - n_fft + 1,
        total - n_fft // 2,
        total - 1,
        total,
    ]
    rng = np.random.default_rng(4)
    for length in lengths:
        samples = (0.1 * rng.standard_normal(length)).astype(np.float32)
        expected = _torchaudio_reference(preset, samples)
        assert torch.equal(extractor(samples, preset.sample_rate), expected), length


def test_extractor_rejects_multichannel() -> None:
    with pytest.raises(ValueError, match=r"mono with shape \(N,\)"):
        FeatureExtractor("paper-mfcc")(np.zeros((2, 100), dtype=np.float32), SR)


# ----------------------------------------------------------------------------------------- cache


def test_second_run_reuses_everything(corpus: pd.DataFrame, cache_dir: Path) -> None:
    first = _extract(corpus, cache_dir)
    assert (first.computed, first.reused, first.failed) == (len(corpus), 0, ())
    assert first.cache_dir == cache_dir / f"paper-mfcc-{PRESETS['paper-mfcc'].fingerprint}"
    assert (first.cache_dir / "preset.json").is_file()
    second = _extract(corpus, cache_dir)
    assert (second.computed, second.reused, second.failed) == (0, len(corpus), ())


def test_changed_audio_is_recomputed_alone(corpus: pd.DataFrame, cache_dir: Path) -> None:
    _extract(corpus, cache_dir)
    before = load_features(corpus, preset="paper-mfcc", cache_dir=cache_dir)
    write_wav(corpus["path"][1], _tone(1200, 1.0), SR)  # same length, other content
    summary = _extract(corpus, cache_dir)
    assert (summary.computed, summary.reused) == (1, len(corpus) - 1)
    after = load_features(corpus, preset="paper-mfcc", cache_dir=cache_dir)
    assert not torch.equal(after[1], before[1])
    assert torch.equal(after[[0, 2, 3, 4, 5]], before[[0, 2, 3, 4, 5]])


def test_changed_preset_parameter_recomputes(corpus: pd.DataFrame, cache_dir: Path) -> None:
    _extract(corpus, cache_dir, preset="logmel-64")
    other = _variant("logmel-64", f_max=7_600.0)
    assert other.fingerprint != PRESETS["logmel-64"].fingerprint
    summary = _extract(corpus, cache_dir, preset=other)
    assert (summary.computed, summary.reused) == (len(corpus), 0)
    assert not torch.equal(
        load_features(corpus, preset=other, cache_dir=cache_dir),
        load_features(corpus, preset="logmel-64", cache_dir=cache_dir),
    )


def test_identical_content_under_two_paths_is_computed_once(
    corpus: pd.DataFrame, cache_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy-of-tone440.wav"
    copy.write_bytes(Path(corpus["path"][0]).read_bytes())
    extra = pd.DataFrame([{"utt_id": "copy", "path": str(copy)}])
    manifest = pd.concat([corpus.iloc[:2], extra], ignore_index=True)
    summary = _extract(manifest, cache_dir)
    assert (summary.computed, summary.shared, summary.reused) == (2, 1, 0)
    loaded = load_features(manifest, preset="paper-mfcc", cache_dir=cache_dir)
    assert torch.equal(loaded[0], loaded[2])


def test_load_features_follows_manifest_row_order(corpus: pd.DataFrame, cache_dir: Path) -> None:
    _extract(corpus, cache_dir)
    loaded = load_features(corpus, preset="paper-mfcc", cache_dir=cache_dir)
    assert loaded.shape == (len(corpus), 1, 128, 128) and loaded.dtype == torch.float32
    shuffled = corpus.iloc[[3, 0, 5, 1, 4, 2]]
    reloaded = load_features(shuffled, preset="paper-mfcc", cache_dir=cache_dir)
    assert torch.equal(reloaded, loaded[[3, 0, 5, 1, 4, 2]])
    extractor = FeatureExtractor("paper-mfcc")
    for row, path in enumerate(corpus["path"]):
        assert torch.equal(loaded[row], extractor(*read_audio(path)))


def test_missing_features_error_says_what_and_how(corpus: pd.DataFrame, cache_dir: Path) -> None:
    _extract(corpus.iloc[:2], cache_dir)
    with pytest.raises(FeaturesNotFoundError) as caught:
        load_features(corpus, preset="paper-mfcc", cache_dir=cache_dir, manifest_path="runs/iemocap.parquet")
    message = str(caught.value)
    assert isinstance(caught.value, LookupError)
    assert "missing for 4 of 6 utterances" in message
    assert "first: noise, tone8k, long, short" in message
    command = f"sernas features --manifest runs/iemocap.parquet --preset paper-mfcc --cache {cache_dir}"
    assert message.endswith(command)


def test_manifest_without_path_column_is_rejected(cache_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"lacks \['path'\]"):
        _extract(pd.DataFrame({"utt_id": ["a"]}), cache_dir)


# ---------------------------------------------------------------------------------------- failures


def test_bad_files_are_reported_and_others_computed(corpus: pd.DataFrame, cache_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "text.wav"
    text.write_text("this is not audio\n")
    absent = tmp_path / "absent.wav"
    bad_files = [("empty", str(empty)), ("text", str(text)), ("absent", str(absent))]
    bad = pd.DataFrame(bad_files, columns=["utt_id", "path"])
    manifest = pd.concat([corpus.iloc[:2], bad, corpus.iloc[2:]], ignore_index=True)
    summary = _extract(manifest, cache_dir)
    assert summary.computed == len(corpus)
    assert [(failure.utt_id, failure.path) for failure in summary.failed] == bad_files
    reasons = {failure.utt_id: failure.reason for failure in summary.failed}
    assert "not a readable audio file" in reasons["text"]
    assert reasons["absent"] == "file does not exist"
    assert summary.computed + summary.reused + summary.shared + len(summary.failed) == summary.n_rows
    assert "3 failed" in summary.describe()


def test_file_changed_during_extraction_is_not_cached(
    corpus: pd.DataFrame, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = corpus["path"][0]

    def read_after_rewrite(path):
        if path == target:
            write_wav(path, _tone(440, 2.0), SR)  # rewritten between hashing and reading
        return read_audio(path)

    monkeypatch.setattr(feature_extraction, "read_audio", read_after_rewrite)
    summary = _extract(corpus.iloc[:2], cache_dir)
    assert [failure.utt_id for failure in summary.failed] == ["tone440"]
    assert "changed while features were being extracted" in summary.failed[0].reason
    assert summary.computed == 1


# ---------------------------------------------------------------------------------------- progress


def test_progress_hears_every_stage_and_count(corpus: pd.DataFrame, cache_dir: Path, tmp_path: Path) -> None:
    absent = pd.DataFrame([("absent", str(tmp_path / "absent.wav"))], columns=["utt_id", "path"])
    manifest = pd.concat([corpus.iloc[:2], corpus.iloc[:1], absent], ignore_index=True)  # a duplicate, a missing file
    calls: list[tuple[str, int, int]] = []
    _extract(manifest, cache_dir, progress=lambda *call: calls.append(call))
    hashing = [("hashing audio", done, 4) for done in range(5)]
    assert calls == hashing + [("computing paper-mfcc", done, 2) for done in range(3)]

    calls.clear()
    _extract(manifest, cache_dir, progress=lambda *call: calls.append(call))  # all cached: nothing to compute
    assert calls == hashing + [("computing paper-mfcc", 0, 0)]


# -------------------------------------------------------------------------------------- atomicity


def test_no_temporary_files_are_left(corpus: pd.DataFrame, cache_dir: Path) -> None:
    _extract(corpus, cache_dir)
    assert not [p for p in cache_dir.rglob("*") if p.name.startswith(".tmp-")]
    assert len(list(cache_dir.rglob("*.npy"))) == len(corpus)


def test_failure_mid_write_leaves_no_partial_file(
    corpus: pd.DataFrame, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = np.save

    def save_then_die(handle, array, *args, **kwargs):
        handle.write(b"\x93NUMPY partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", save_then_die)
    with pytest.raises(OSError, match="No space left"):
        _extract(corpus.iloc[:1], cache_dir)
    assert list(cache_dir.rglob("*.npy")) == []
    assert not [p for p in cache_dir.rglob("*") if p.name.startswith(".tmp-")]

    monkeypatch.setattr(np, "save", real_save)
    summary = _extract(corpus.iloc[:1], cache_dir)
    assert summary.computed == 1
    assert load_features(corpus.iloc[:1], preset="paper-mfcc", cache_dir=cache_dir).shape == (1, 1, 128, 128)


# ----------------------------------------------------------------------------------- content index


def _count_hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    hashed: list[str] = []
    real_hash = feature_cache._hash_file

    def counting(path: str) -> str:
        hashed.append(path)
        return real_hash(path)

    monkeypatch.setattr(feature_cache, "_hash_file", counting)
    return hashed


def test_index_skips_rehashing_unchanged_files(
    corpus: pd.DataFrame, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feature_cache, "_INDEX_MIN_AGE_NS", 0)  # trust even just-written files
    _extract(corpus, cache_dir)
    hashed = _count_hashes(monkeypatch)
    load_features(corpus, preset="paper-mfcc", cache_dir=cache_dir)
    assert _extract(corpus, cache_dir).reused == len(corpus)
    assert hashed == []

    path = corpus["path"][2]
    write_wav(path, _tone(1500, 1.0), SR)  # other size, other content
    summary = _extract(corpus, cache_dir)
    assert hashed == [path]
    assert (summary.computed, summary.reused, summary.hashed) == (1, len(corpus) - 1, 1)


def test_index_ignores_recently_modified_files(
    corpus: pd.DataFrame, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _extract(corpus, cache_dir)  # files were just written: too young for the index
    hashed = _count_hashes(monkeypatch)
    assert _extract(corpus, cache_dir).hashed == len(corpus)
    assert len(hashed) == len(corpus)
    assert not (cache_dir / "content-index.json").exists()


def test_corrupt_index_only_costs_rehashing(
    corpus: pd.DataFrame, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feature_cache, "_INDEX_MIN_AGE_NS", 0)
    _extract(corpus, cache_dir)
    (cache_dir / "content-index.json").write_text("{not json")
    summary = _extract(corpus, cache_dir)
    assert (summary.computed, summary.reused) == (0, len(corpus))


def test_load_from_read_only_cache_warns_about_the_index(
    corpus: pd.DataFrame, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _extract(corpus, cache_dir)  # files too young to be indexed, so loading will try to add them
    monkeypatch.setattr(feature_cache, "_INDEX_MIN_AGE_NS", 0)

    def read_only(destination, text):
        raise PermissionError(13, "Permission denied", str(destination))

    monkeypatch.setattr(feature_cache, "write_text_atomically", read_only)
    with pytest.warns(UserWarning, match="could not update the content index"):
        loaded = load_features(corpus, preset="paper-mfcc", cache_dir=cache_dir)
    assert loaded.shape == (len(corpus), 1, 128, 128)


# ---------------------------------------------------------------------------------------- workers


@pytest.mark.slow  # two spawned processes import torch: ~5 s on a 2-core node
def test_two_workers_match_one(corpus: pd.DataFrame, tmp_path: Path) -> None:
    manifest = corpus.iloc[[0, 3, 5]]  # 16 kHz, 8 kHz, short
    one = _extract(manifest, tmp_path / "one", workers=1)
    two = _extract(manifest, tmp_path / "two", workers=2)
    assert one.computed == two.computed == len(manifest)
    assert torch.equal(
        load_features(manifest, preset="paper-mfcc", cache_dir=tmp_path / "one"),
        load_features(manifest, preset="paper-mfcc", cache_dir=tmp_path / "two"),
    )


def test_workers_must_be_positive(corpus: pd.DataFrame, cache_dir: Path) -> None:
    with pytest.raises(ValueError, match="workers must be an integer >= 1, but got 0"):
        _extract(corpus, cache_dir, workers=0)


def test_feature_path_layout(cache_dir: Path) -> None:
    content_hash = "ab" + "0" * 30
    preset = PRESETS["paper-mfcc"]
    expected = cache_dir / f"paper-mfcc-{preset.fingerprint}" / "ab" / f"{content_hash}.npy"
    assert feature_path(cache_dir, preset, content_hash) == expected


def test_upsampling_adds_nothing_above_the_source_nyquist() -> None:
    """16 kHz speech upsampled to paper-mfcc's 32,750 Hz must stay empty above 8 kHz (no sinc
    images), as librosa's resampler leaves it; the images moved paper-mfcc's MFCCs by ~12 %."""
    noise = np.random.default_rng(0).standard_normal(16_000 * 2).astype(np.float32)  # 2 s, flat to 8 kHz
    up = FeatureExtractor("paper-mfcc")._resampler(16_000)(torch.from_numpy(noise).unsqueeze(0)).squeeze(0)
    power = torch.fft.rfft(up * torch.hann_window(up.shape[0])).abs().pow(2)  # (bins,)
    hz = torch.fft.rfftfreq(up.shape[0], d=1 / 32_750)
    inside = power[(hz > 500) & (hz < 7_000)].mean()
    images = power[(hz > 8_600) & (hz < 16_000)].mean()
    assert 10 * torch.log10(images / inside) < -60  # torchaudio's default Hann/6-crossing kernel: about -25 dB
