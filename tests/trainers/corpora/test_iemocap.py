from pathlib import Path

import pytest

from trainers.corpora.iemocap import scan_iemocap
from trainers.corpora.scan import CorpusError


def test_reads_every_labelled_utterance_with_speaker_from_the_utterance_suffix(fake_iemocap):
    scan = scan_iemocap(fake_iemocap.root)
    assert scan.problems == []
    found = {record["utt_id"]: record for record in scan.records}
    assert set(found) == set(fake_iemocap.expected)
    for utt_id, expected in fake_iemocap.expected.items():
        record = found[utt_id]
        for key in ("label", "session", "speaker", "gender", "improvised", "dialog"):
            assert record[key] == expected[key], (utt_id, key)
        assert record["path"] == str(fake_iemocap.wavs[utt_id].resolve())
        assert Path(record["path"]).is_absolute()
    # The speaker comes from the utterance's own suffix, not the dialog's gender letter.
    assert found["Ses01F_impro01_M000"]["speaker"] == "Ses01M"
    assert found["Ses01M_script01_1b_F000"]["speaker"] == "Ses01F"
    assert found["Ses01M_script01_1b_F000"]["improvised"] is False
    # Raw labels are kept, decoys included.
    assert {"exc", "fru", "xxx"} <= {record["label"] for record in scan.records}


def test_valence_arousal_dominance_and_times_are_parsed(fake_iemocap):
    record = next(r for r in scan_iemocap(fake_iemocap.root).records if r["utt_id"] == "Ses01F_impro01_F000")
    assert (record["valence"], record["arousal"], record["dominance"]) == (2.5, 3.0, 3.5)
    assert record["start_s"] == 1.0 and record["end_s"] == pytest.approx(1.5)


def test_missing_root_is_an_error_naming_it(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        scan_iemocap(tmp_path / "nowhere")


def test_root_without_sessions_says_what_layout_was_expected(tmp_path):
    (tmp_path / "something").mkdir()
    with pytest.raises(CorpusError, match=r"no Session1\.\.Session5 folders"):
        scan_iemocap(tmp_path)


def test_garbage_line_is_reported_with_file_and_line(fake_iemocap):
    label_file = fake_iemocap.label_files[0]
    lines = label_file.read_text().splitlines()
    lines.insert(3, "this line is garbage")
    lines.insert(5, "[1.0 - 2.0] Ses01F_impro01_F000 neu")  # spaces instead of tabs
    label_file.write_text("\n".join(lines) + "\n")
    problems = scan_iemocap(fake_iemocap.root).problems
    located = {(p.path, p.line) for p in problems}
    assert (label_file, 4) in located and (label_file, 6) in located
    assert any("this line is garbage" in p.reason for p in problems)


def test_unknown_label_and_foreign_utterance_id_are_reported(fake_iemocap):
    label_file = fake_iemocap.label_files[0]
    text = label_file.read_text().replace("\tneu\t", "\tcalm\t", 1)
    text = text.replace("Ses01F_impro01_M000\t", "Ses02F_impro01_M000\t", 1)
    label_file.write_text(text)
    reasons = [p.reason for p in scan_iemocap(fake_iemocap.root).problems]
    assert any("unknown label 'calm'" in reason for reason in reasons)
    assert any("Ses02F_impro01_M000" in reason for reason in reasons)


def test_label_without_audio_and_audio_without_label(fake_iemocap):
    fake_iemocap.wavs["Ses01F_impro01_F000"].unlink()
    orphan = fake_iemocap.wavs["Ses02F_impro01_F000"].with_name("Ses02F_impro01_F099.wav")
    orphan.write_bytes(fake_iemocap.wavs["Ses02F_impro01_F000"].read_bytes())
    problems = scan_iemocap(fake_iemocap.root).problems
    assert any("label for Ses01F_impro01_F000 but no audio" in p.reason for p in problems)
    assert any(p.path == orphan and "audio without a label" in p.reason for p in problems)


def test_missing_session_subfolder_is_named(fake_iemocap):
    import shutil

    shutil.rmtree(fake_iemocap.root / "Session2" / "sentences")
    problems = scan_iemocap(fake_iemocap.root).problems
    assert [p.path.name for p in problems] == ["wav"]
    assert "missing folder" in problems[0].reason
