import pandas as pd
import pytest

from trainers.corpora.scan import CorpusError
from trainers.manifest import CORE_COLUMNS, build_manifest, manifest_info, read_manifest, rejects_path, write_manifest


def test_iemocap_manifest_rows_match_the_tree(fake_iemocap, tmp_path):
    out = write_manifest(build_manifest(dataset="iemocap", root=fake_iemocap.root), tmp_path / "m.parquet")
    frame = read_manifest(out)
    assert list(frame.columns[: len(CORE_COLUMNS)]) == list(CORE_COLUMNS)
    assert len(frame) == len(fake_iemocap.expected) and frame["utt_id"].is_unique
    for row in frame.itertuples():
        expected = fake_iemocap.expected[row.utt_id]
        assert (row.label, row.session, row.speaker, row.gender, bool(row.improvised)) == (
            expected["label"],
            expected["session"],
            expected["speaker"],
            expected["gender"],
            expected["improvised"],
        )
        assert row.duration_s == pytest.approx(expected["duration_s"], abs=1e-4)
        assert row.sample_rate == 16000 and row.dataset == "iemocap"
    assert manifest_info(out)["dataset"] == "iemocap"
    assert frame["session"].dtype == "int64"


def test_msp_improv_manifest(fake_msp_improv, tmp_path):
    out = write_manifest(build_manifest(dataset="msp-improv", root=fake_msp_improv.root), tmp_path / "m.parquet")
    frame = read_manifest(out)
    assert set(frame["utt_id"]) == set(fake_msp_improv.expected)
    assert {"part", "target", "scenario", "arousal", "valence"} <= set(frame.columns)
    assert sorted(frame["session"].unique()) == [1, 2]


def _break_files(corpus):
    """An empty WAV, a truncated WAV, a text file named .wav; returns their paths."""
    empty, truncated, text = (
        corpus.wavs[u] for u in ("Ses01F_impro01_F000", "Ses01F_impro01_M000", "Ses02F_impro01_F000")
    )
    empty.write_bytes(b"")
    truncated.write_bytes(truncated.read_bytes()[:2000])
    text.write_text("this is not audio\n")
    return empty, truncated, text


def test_bad_audio_fails_listing_every_file_and_writes_nothing(fake_iemocap, tmp_path):
    empty, truncated, text = _break_files(fake_iemocap)
    result = build_manifest(dataset="iemocap", root=fake_iemocap.root)
    out = tmp_path / "m.parquet"
    with pytest.raises(CorpusError) as caught:
        write_manifest(result, out)
    message = str(caught.value)
    assert f"{empty}: empty file (0 bytes)" in message
    assert f"{truncated}: truncated WAV" in message
    assert f"{text}: not a readable audio file" in message
    assert "nothing was written" in message and "--skip-bad" in message
    assert list(tmp_path.iterdir()) == [fake_iemocap.root]  # no manifest, no rejects, no temp file


def test_skip_bad_writes_the_rest_and_a_rejects_file(fake_iemocap, tmp_path):
    broken = _break_files(fake_iemocap)
    out = tmp_path / "m.parquet"
    write_manifest(build_manifest(dataset="iemocap", root=fake_iemocap.root), out, skip_bad=True)
    frame = read_manifest(out)
    assert len(frame) == len(fake_iemocap.expected) - 3
    rejects = pd.read_csv(rejects_path(out))
    assert sorted(rejects["path"]) == sorted(str(p) for p in broken)
    assert list(rejects.columns) == ["path", "line", "reason"]


def test_read_manifest_rejects_foreign_files(tmp_path):
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(ValueError, match="lacks column"):
        read_manifest(tmp_path / "other.parquet")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(ValueError, match="not a readable Parquet file"):
        read_manifest(tmp_path / "broken.parquet")
    with pytest.raises(FileNotFoundError, match="sernas manifest"):
        read_manifest(tmp_path / "absent.parquet")


def test_unknown_dataset_names_the_choices(tmp_path):
    with pytest.raises(CorpusError, match="iemocap, msp-improv, csv"):
        build_manifest(dataset="ravdess", root=tmp_path)


def test_clips_under_the_minimum_duration_are_problems(fake_iemocap, tmp_path):
    short = {utt for utt, expected in fake_iemocap.expected.items() if expected["duration_s"] < 0.6}  # the 0.5 s ones
    result = build_manifest(dataset="iemocap", root=fake_iemocap.root, min_duration_s=0.6)
    assert sorted(p.path for p in result.problems) == sorted(fake_iemocap.wavs[utt] for utt in short)
    assert all(
        p.reason.startswith("clip too short: 0.500 s of audio, expected at least 0.6 s") for p in result.problems
    )
    assert set(result.frame["utt_id"]) == set(fake_iemocap.expected) - short
    write_manifest(result, tmp_path / "m.parquet", skip_bad=True)
    assert manifest_info(tmp_path / "m.parquet")["min_duration_s"] == 0.6
    everything = build_manifest(dataset="iemocap", root=fake_iemocap.root, min_duration_s=0)
    assert not everything.problems and len(everything.frame) == len(fake_iemocap.expected)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="min_duration_s must be a finite number of seconds >= 0"):
            build_manifest(dataset="iemocap", root=fake_iemocap.root, min_duration_s=bad)
