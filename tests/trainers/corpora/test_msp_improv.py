import math

import pytest

from conftest import build_fake_msp_improv
from trainers.corpora.msp_improv import scan_msp_improv
from trainers.corpora.scan import CorpusError


def test_reads_consensus_labels_and_ignores_rater_lines(fake_msp_improv):
    scan = scan_msp_improv(fake_msp_improv.root)
    assert scan.problems == []
    found = {record["utt_id"]: record for record in scan.records}
    assert set(found) == set(fake_msp_improv.expected)
    for utt_id, expected in fake_msp_improv.expected.items():
        for key in ("label", "session", "speaker", "gender", "improvised", "part", "target", "scenario"):
            assert found[utt_id][key] == expected[key], (utt_id, key)
    assert found["MSP-IMPROV-S01A-F01-R-FM01"]["improvised"] is False
    assert found["MSP-IMPROV-S02H-F01-T-FM01"]["improvised"] is True


def test_nan_scores_are_kept_as_nan(fake_msp_improv):
    records = scan_msp_improv(fake_msp_improv.root).records
    assert sum(math.isnan(r["arousal"]) for r in records) == 1
    assert all(r["valence"] == 2.2 for r in records)


def test_alternative_spelling_of_the_label_file(tmp_path):
    corpus = build_fake_msp_improv(tmp_path / "msp", label_file_name="Evalution.txt")
    assert len(scan_msp_improv(corpus.root).records) == len(corpus.expected)


def test_missing_label_file_is_named(tmp_path):
    (tmp_path / "session1").mkdir()
    with pytest.raises(CorpusError, match="Evaluation.txt or Evalution.txt"):
        scan_msp_improv(tmp_path)


def test_bad_consensus_letter_and_mismatched_session_are_reported(fake_msp_improv):
    label_file = fake_msp_improv.label_files[0]
    text = label_file.read_text().replace("UTD-IMPROV-S01A-F01-R-FM01.avi; A;", "UTD-IMPROV-S01A-F01-R-FM01.avi; Q;")
    label_file.write_text(text)
    moved = fake_msp_improv.wavs["MSP-IMPROV-S02H-M02-T-FM02"]
    target = fake_msp_improv.root / "session1" / "S02H" / "T" / moved.name
    moved.rename(target)
    problems = scan_msp_improv(fake_msp_improv.root).problems
    assert any(p.line == 1 and "unknown consensus label 'Q'" in p.reason for p in problems)
    assert any(p.path == target and "belongs to session2" in p.reason for p in problems)
