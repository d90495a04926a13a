import numpy as np
import pytest

from trainers.audio import write_wav
from trainers.corpora.csv_corpus import scan_csv
from trainers.corpora.scan import CorpusError


@pytest.fixture
def csv_corpus(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    for name in ("a", "b", "c"):
        write_wav(audio / f"{name}.wav", np.zeros(8000, dtype=np.float32), 16000)
    return tmp_path


def test_paths_are_relative_to_the_csv_and_sessions_default_to_speakers(csv_corpus):
    (csv_corpus / "labels.csv").write_text(
        "path,label,speaker,gender\naudio/a.wav,happy,s1,female\naudio/b.wav,sad,s2,M\naudio/c.wav,sad,s1,f\n"
    )
    scan = scan_csv(csv_corpus / "labels.csv")
    assert scan.problems == []
    rows = {r["utt_id"]: r for r in scan.records}
    assert rows["a"]["path"] == str((csv_corpus / "audio" / "a.wav").resolve())
    assert (rows["a"]["session"], rows["b"]["session"], rows["c"]["session"]) == (1, 2, 1)
    assert rows["a"]["gender"] == "F" and rows["b"]["gender"] == "M"
    assert rows["a"]["improvised"] is None


def test_missing_required_column_names_it(csv_corpus):
    (csv_corpus / "labels.csv").write_text("file,label\naudio/a.wav,happy\n")
    with pytest.raises(CorpusError, match="missing column.*path.*speaker"):
        scan_csv(csv_corpus / "labels.csv")


def test_bad_rows_are_reported_by_line(csv_corpus):
    (csv_corpus / "labels.csv").write_text(
        "path,label,speaker,session,gender\n"
        "audio/a.wav,happy,s1,1,F\n"
        "audio/missing.wav,happy,s1,1,F\n"
        "audio/b.wav,sad,s2,two,M\n"
        "audio/c.wav,,s2,2,M\n"
        "audio/a.wav,sad,s2,2,X\n"
    )
    scan = scan_csv(csv_corpus / "labels.csv")
    by_line = {p.line: p.reason for p in scan.problems}
    assert "no audio" in by_line[3]
    assert "not an integer" in by_line[4]
    assert "empty label" in by_line[5]
    assert "already used on line 2" in by_line[6]
    assert [r["utt_id"] for r in scan.records] == ["a"]
