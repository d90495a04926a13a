"""Shared split files in, sernas fold tables out, and back: EmoBox, s3prl, SpeechBrain.

Fixtures are small folders the tests write themselves (``split_files``): a fake IEMOCAP with
real WAVs and the split files as each toolkit publishes them."""

import json

import pandas as pd
import pytest
from split_files import build_emobox, build_s3prl, build_speechbrain

from trainers.corpora.scan import CorpusError
from trainers.fold_export import export_folds
from trainers.folds import (
    FoldProtocol,
    check_folds,
    fold_counts,
    make_folds,
    read_folds,
    require_speaker_independence,
    write_folds,
)
from trainers.given_folds import given_folds
from trainers.imports import read_given_splits
from trainers.manifest import build_manifest, read_manifest, write_manifest

CLASSES = ("neu", "hap", "sad", "ang")
GIVEN = FoldProtocol(scheme="given", classes=CLASSES, merges={"exc": "hap"}, valid_speakers=1)


def imported(fixture, fmt, **options):
    result = build_manifest(dataset=fmt, root=fixture.root, audio_root=fixture.audio_root, **options)
    assert result.problems == ()
    return result.frame, read_given_splits(fmt, fixture.root, corpus=options.get("corpus"))


def test_an_emobox_import_reproduces_its_folds_exactly(tmp_path):
    emobox = build_emobox(tmp_path / "EmoBox")
    manifest, splits = imported(emobox, "emobox")
    # The manifest: every listed utterance, ids without EmoBox's "iemocap-" prefix, raw labels, IEMOCAP's speakers.
    assert set(manifest["utt_id"]) == set().union(*(s["train"] | s["test"] for s in emobox.folds.values()))
    row = manifest.set_index("utt_id").loc["Ses01M_script01_1b_F000"]
    assert (row["speaker"], row["gender"], row["session"], row["speaker_source"]) == ("Ses01F", "F", 1, "rule")
    assert row["source_key"] == "iemocap-Ses01M_script01_1b_F000" and row["dataset"] == "iemocap"
    assert "exc" in set(manifest["label"])  # raw, as EmoBox keeps it; the protocol merges
    table = given_folds(manifest, splits, protocol=GIVEN)
    counts = fold_counts(table)
    print("\nEmoBox fixture (3 sessions, leave-one-session-out): utterances per fold and split")
    print(counts[["train", "valid", "test", "speaker check"]].to_string())
    for fold, expected in emobox.folds.items():
        rows = table[table["fold"] == fold]
        assert set(rows.loc[rows["split"] == "test", "utt_id"]) == expected["test"]  # their test, exactly
        assert set(rows.loc[rows["split"] != "test", "utt_id"]) == expected["train"]  # their train: train + valid
        assert counts.loc[fold, "test"] == len(expected["test"])
        assert counts.loc[fold, "train"] + counts.loc[fold, "valid"] == len(expected["train"])
        valid = set(rows.loc[rows["split"] == "valid", "speaker"])
        assert len(valid) == 1 and not valid & set(rows.loc[rows["split"] == "test", "speaker"])
    assert set(table["speaker_check"]) == {"independent"} and set(table["label"]) <= set(CLASSES)
    require_speaker_independence(table, opt_in="x")  # nothing flagged, nothing refused
    again = given_folds(manifest, read_given_splits("emobox", emobox.root), protocol=GIVEN)
    assert again.equals(table)  # seeded: the same roles every time


def test_emobox_folds_written_then_read_back_are_the_same_table(fake_iemocap, tmp_path):
    manifest = build_manifest(dataset="iemocap", root=fake_iemocap.root).frame
    made = make_folds(
        manifest, protocol=FoldProtocol(scheme="loso", classes=CLASSES, merges={"exc": "hap"}, valid_speakers=1)
    )
    out = tmp_path / "export" / "iemocap"
    export_folds(made, manifest, format="emobox", out_dir=out, audio_root=fake_iemocap.root)
    first = json.loads((out / "fold_1" / "iemocap_test_fold_1.jsonl").read_text().splitlines()[0])
    assert first["key"].startswith("iemocap-Ses01") and not first["wav"].startswith("/")
    assert json.loads((out / "label_map.json").read_text())["exc"] == "hap"
    back = build_manifest(dataset="emobox", root=out, audio_root=fake_iemocap.root).frame
    table = given_folds(back, read_given_splits("emobox", out), protocol=GIVEN)
    assert table.equals(made)  # same utterances, folds, splits, labels, speakers and search roles


def test_s3prl_folds_written_then_read_back_are_the_same_table(fake_iemocap, tmp_path):
    manifest = build_manifest(dataset="iemocap", root=fake_iemocap.root).frame
    protocol = FoldProtocol(scheme="loso", classes=CLASSES, merges={"exc": "hap"}, valid_speakers=1)
    made = make_folds(manifest, protocol=protocol)
    export_folds(made, manifest, format="s3prl", out_dir=tmp_path / "meta_data", classes=CLASSES)
    meta = json.loads((tmp_path / "meta_data" / "Session1" / "test_meta_data.json").read_text())
    assert meta["labels"] == {"neu": 0, "hap": 1, "sad": 2, "ang": 3}
    back = build_manifest(dataset="s3prl", root=tmp_path / "meta_data").frame  # absolute paths: no audio root
    table = given_folds(back, read_given_splits("s3prl", tmp_path / "meta_data"), protocol=GIVEN)
    assert table.equals(made)


def test_s3prl_import_takes_the_naming_rule_over_its_speaker_field_and_a_map_over_both(tmp_path):
    s3prl = build_s3prl(tmp_path)
    manifest, splits = imported(s3prl, "s3prl")
    row = manifest.set_index("utt_id").loc["Ses01M_script01_1b_F000"]
    assert (row["speaker"], row["source_speaker"], row["speaker_source"]) == ("Ses01F", "Ses01M", "rule")
    table = given_folds(manifest, splits, protocol=GIVEN)
    for fold, expected in s3prl.folds.items():
        rows = table[table["fold"] == fold]
        assert set(rows.loc[rows["split"] == "test", "utt_id"]) == expected["test"]
    assert set(table["speaker_check"]) == {"independent"}
    speakers = tmp_path / "speakers.csv"
    speakers.write_text("utt_id,speaker,gender\nSes01M_script01_1b_F000,actress-1,F\n")
    mapped = build_manifest(dataset="s3prl", root=s3prl.root, audio_root=s3prl.audio_root, speakers=speakers).frame
    row = mapped.set_index("utt_id").loc["Ses01M_script01_1b_F000"]
    assert (row["speaker"], row["speaker_source"]) == ("actress-1", "map")


def test_speechbrain_keeps_its_own_validation_split(tmp_path):
    brain = build_speechbrain(tmp_path)
    manifest, splits = imported(brain, "speechbrain")
    table = given_folds(manifest, splits, protocol=GIVEN)
    for split in ("train", "valid", "test"):
        assert set(table.loc[table["split"] == split, "utt_id"]) == brain.folds[1][split]
    assert set(table.loc[table["split"] == "valid", "speaker"]) == {"Ses03M"}
    assert set(table["speaker_check"]) == {"independent"}


def _single_fold_emobox(tmp_path, *, corpus="cremad"):
    """A CREMA-D-like corpus (no speaker rule known to sernas) with one fold whose train and test
    share speakers, as EmoBox's single-fold corpora do."""
    emobox = build_emobox(tmp_path / "EmoBox", sessions=(1, 2))
    data = emobox.root
    listing = [json.loads(line) for line in (data / "iemocap.jsonl").read_text().splitlines()]
    for item in listing:
        item["dataset"] = corpus
        item["key"] = f"{corpus}-{item['key'].split('-', 1)[1]}"
    target = data.parent / corpus
    (target / "fold_1").mkdir(parents=True)
    (target / "label_map.json").write_text((data / "label_map.json").read_text())
    (target / f"{corpus}.jsonl").write_text("".join(json.dumps(i) + "\n" for i in listing))
    test = [i for n, i in enumerate(listing) if n % 3 == 0]  # every third utterance: all speakers in both
    train = [i for n, i in enumerate(listing) if n % 3]
    (target / "fold_1" / f"{corpus}_test_fold_1.jsonl").write_text("".join(json.dumps(i) + "\n" for i in test))
    (target / "fold_1" / f"{corpus}_train_fold_1.jsonl").write_text("".join(json.dumps(i) + "\n" for i in train))
    return emobox, target


def test_a_fold_sharing_speakers_is_flagged_and_refused_unless_opted_in(tmp_path):
    emobox, target = _single_fold_emobox(tmp_path)
    speakers = tmp_path / "speakers.csv"  # the speakers, from the user: IEMOCAP's, under another name
    speakers.write_text(
        "key,speaker,gender\n"
        + "".join(f"cremad-{u},{f['speaker']},{f['gender']}\n" for u, f in emobox.corpus.expected.items())
    )
    result = build_manifest(dataset="emobox", root=target, audio_root=emobox.audio_root, speakers=speakers)
    assert result.problems == () and set(result.frame["speaker_source"]) == {"map"}
    table = given_folds(result.frame, read_given_splits("emobox", target), protocol=GIVEN)
    assert set(table["speaker_check"]) == {"overlap"}
    test_speakers = set(table.loc[table["split"] == "test", "speaker"])
    valid = set(table.loc[table["split"] == "valid", "speaker"])
    assert valid and valid <= set(table["speaker"])  # drawn from the training side all the same
    check_folds(table)  # a flagged fold may share speakers; its flag must be the truth
    with pytest.raises(ValueError, match=r"fold 1: test speaker\(s\) .* also train or validate.*--accept"):
        require_speaker_independence(table, opt_in="--accept")
    assert test_speakers
    # A hand-edited flag is refused when read.
    out = tmp_path / "folds.parquet"
    write_folds(table, out, protocol=GIVEN, manifest_path=tmp_path / "m.parquet")
    lied = pd.read_parquet(out).assign(speaker_check="independent")
    lied.to_parquet(out)
    with pytest.raises(ValueError, match="also in train/valid"):
        read_folds(out)


def test_unknown_speakers_are_their_own_and_flag_the_fold(tmp_path):
    emobox, target = _single_fold_emobox(tmp_path, corpus="cafe")
    manifest = build_manifest(dataset="emobox", root=target, audio_root=emobox.audio_root).frame
    assert set(manifest["speaker_source"]) == {"unknown"}
    assert manifest["speaker"].str.startswith("unknown:").all() and set(manifest["session"]) == {0}
    table = given_folds(manifest, read_given_splits("emobox", target), protocol=GIVEN)
    assert set(table["speaker_check"]) == {"unknown"}
    with pytest.raises(ValueError, match="fold 1: speakers unknown for"):
        require_speaker_independence(table, opt_in="x")


# ----------------------------------------------------------------------------------- bad input
def _problems(fixture, fmt, tmp_path, **options):
    """Import ``fixture``; its problems as text, after checking that nothing was written."""
    out = tmp_path / "m.parquet"
    result = build_manifest(dataset=fmt, root=fixture.root, audio_root=fixture.audio_root, **options)
    with pytest.raises(CorpusError) as caught:
        write_manifest(result, out)
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))
    return str(caught.value)


def _edit_line(path, number, edit):
    lines = path.read_text().splitlines()
    lines[number - 1] = edit(lines[number - 1])
    path.write_text("\n".join(lines) + "\n")


def test_a_missing_wav_names_the_file_and_line(tmp_path):
    emobox = build_emobox(tmp_path / "EmoBox")
    listing = emobox.root / "iemocap.jsonl"
    utt = json.loads(listing.read_text().splitlines()[1])["key"].split("-", 1)[1]
    emobox.corpus.wavs[utt].unlink()
    message = _problems(emobox, "emobox", tmp_path)
    assert f"{listing}:2: {utt}: no audio at {emobox.corpus.wavs[utt]}" in message


def test_a_label_outside_the_mapping_names_the_file_and_line(tmp_path):
    emobox = build_emobox(tmp_path / "EmoBox")
    test_file = emobox.files[(2, "test")]
    _edit_line(test_file, 3, lambda line: line.replace(f'"emo": "{json.loads(line)["emo"]}"', '"emo": "bored"'))
    message = _problems(emobox, "emobox", tmp_path)
    assert f"{test_file}:3: label 'bored' is outside the mapping of label_map.json" in message
    s3prl = build_s3prl(tmp_path / "s3prl")
    path = s3prl.files[(1, "test")]
    meta = json.loads(path.read_text())
    meta["meta_data"][0]["label"] = "fru"
    path.write_text(json.dumps(meta, indent=1))
    assert f"{path}:" in (message := _problems(s3prl, "s3prl", tmp_path / "s3prl"))
    assert "label 'fru' is outside the mapping of this file's labels (expected one of neu, hap, ang, sad)" in message


def test_a_key_in_two_folds_test_sets_names_both(tmp_path):
    emobox = build_emobox(tmp_path / "EmoBox")
    first, second = emobox.files[(1, "test")], emobox.files[(2, "test")]
    moved = first.read_text().splitlines()[0]
    second.write_text(second.read_text() + moved + "\n")
    train = emobox.files[(2, "train")]  # and out of fold 2's train, so only the test sets clash
    train.write_text("".join(line + "\n" for line in train.read_text().splitlines() if line != moved))
    utt = json.loads(moved)["key"].split("-", 1)[1]
    lines = len(second.read_text().splitlines())
    message = _problems(emobox, "emobox", tmp_path)
    assert f"{second}:{lines}: utterance {utt} is in the test set of fold 2 and of fold 1 ({first}:1)" in message
    with pytest.raises(CorpusError, match="no fold table was made"):
        given_folds(pd.DataFrame({"utt_id": []}), read_given_splits("emobox", emobox.root), protocol=GIVEN)


def test_a_json_line_that_does_not_parse_names_the_file_and_line(tmp_path):
    emobox = build_emobox(tmp_path / "EmoBox")
    train = emobox.files[(3, "train")]
    _edit_line(train, 2, lambda line: line[:-1])  # the closing brace lost
    message = _problems(emobox, "emobox", tmp_path)
    assert f"{train}:2: line does not parse as JSON" in message
    brain = build_speechbrain(tmp_path / "sb")
    test = brain.files[(1, "test")]
    number = next(n for n, line in enumerate(test.read_text().splitlines(), start=1) if '"wav":' in line)
    _edit_line(test, number, lambda line: line.replace('"wav":', '"wav"'))
    message = _problems(brain, "speechbrain", tmp_path / "sb")
    assert f"{test}:{number}: does not parse as JSON" in message


def test_an_utterance_in_train_and_test_of_one_fold_and_a_bad_map_row_are_problems(tmp_path):
    emobox = build_emobox(tmp_path / "EmoBox")
    test, train = emobox.files[(1, "test")], emobox.files[(1, "train")]
    train.write_text(train.read_text() + test.read_text().splitlines()[0] + "\n")
    speakers = tmp_path / "map.csv"
    speakers.write_text("utt_id,speaker,gender\nSes01F_impro01_F000,a,X\n")
    message = _problems(emobox, "emobox", tmp_path, speakers=speakers)
    last = len(train.read_text().splitlines())
    assert f"{test}:1: utterance Ses01F_impro01_F000 is in both train ({train}:{last}) and test of fold 1" in message
    assert f"{speakers}:2: gender 'X' is not one of F, M" in message


def test_a_stored_manifest_and_fold_table_round_trip(tmp_path):
    emobox = build_emobox(tmp_path / "EmoBox")
    result = build_manifest(dataset="emobox", root=emobox.root, audio_root=emobox.audio_root)
    write_manifest(result, tmp_path / "m.parquet")
    manifest = read_manifest(tmp_path / "m.parquet")
    table = given_folds(manifest, read_given_splits("emobox", emobox.root), protocol=GIVEN, folds=[2])
    write_folds(
        table, tmp_path / "f.parquet", protocol=GIVEN, manifest_path=tmp_path / "m.parquet", source={"format": "emobox"}
    )
    stored, metadata = read_folds(tmp_path / "f.parquet")
    assert stored.equals(table) and metadata["scheme"] == "given" and metadata["source"] == {"format": "emobox"}
    with pytest.raises(ValueError, match=r"fold 9 does not exist; .* have folds \[1, 2, 3\]"):
        given_folds(manifest, read_given_splits("emobox", emobox.root), protocol=GIVEN, folds=[9])
