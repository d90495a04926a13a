"""Cross-corpus folds: several corpora in one manifest, train on some, test on another.

Fixtures are tiny corpora the tests write themselves: a fake IEMOCAP (real WAVs, IEMOCAP's layout)
and a fake MSP-IMPROV, and two copies of one IEMOCAP layout whose utterance ids and speakers
coincide (as two synthetic corpora's do)."""

import pandas as pd
import pytest

from conftest import build_fake_iemocap, build_fake_msp_improv
from trainers.corpora.speakers import is_unknown_speaker
from trainers.cross_corpus import (
    class_mapping,
    combine_manifests,
    cross_corpus_folds,
    fold_corpora,
    qualified_speaker,
    qualified_utt_id,
)
from trainers.folds import FoldProtocol, make_folds, make_inner_folds, read_folds, write_folds
from trainers.manifest import build_manifest

CLASSES = ("neu", "hap", "sad", "ang")


def protocol(**options) -> FoldProtocol:
    corpora = {"iemocap": {"exc": "hap"}, "msp-improv": {}}
    return FoldProtocol(
        scheme="cross-corpus",
        classes=options.pop("classes", CLASSES),
        corpus_merges=options.pop("corpus_merges", corpora),
        test_corpora=options.pop("test_corpora", ("msp-improv",)),
        **options,
    )


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    iemocap = build_fake_iemocap(root / "IEMOCAP", sessions=(1, 2, 3), per_dialog=6)
    msp = build_fake_msp_improv(root / "MSP-IMPROV", sessions=(1, 2, 3))
    copy = build_fake_iemocap(root / "IEMOCAP-copy", sessions=(1, 2, 3), per_dialog=6)
    return {
        name: build_manifest(dataset=dataset, root=corpus.root).frame
        for name, dataset, corpus in (("iemocap", "iemocap", iemocap), ("msp-improv", "msp-improv", msp))
    } | {"copy": build_manifest(dataset="iemocap", root=copy.root).frame}


@pytest.fixture(scope="module")
def combined(manifests):
    return combine_manifests({"iemocap": manifests["iemocap"], "msp-improv": manifests["msp-improv"]})


def test_one_manifest_of_two_corpora_qualifies_ids_and_speakers(manifests, combined):
    assert len(combined) == len(manifests["iemocap"]) + len(manifests["msp-improv"])
    assert combined["utt_id"].is_unique
    row = combined[combined["corpus_utt_id"] == "Ses01F_impro01_F000"].iloc[0]
    assert (row["utt_id"], row["speaker"], row["dataset"]) == (
        "iemocap/Ses01F_impro01_F000",
        "iemocap/Ses01F",
        "iemocap",
    )
    assert (row["corpus_speaker"], row["corpus_dataset"], row["session"]) == ("Ses01F", "iemocap", 1)
    assert set(combined["dataset"]) == {"iemocap", "msp-improv"}
    assert set(combined.loc[combined["dataset"] == "msp-improv", "speaker"]) == {
        f"msp-improv/{g}{s:02d}" for g in "FM" for s in (1, 2, 3)
    }
    # The corpora's own columns (IEMOCAP's dialog, MSP-IMPROV's part) stay, empty for the other corpus.
    assert combined.loc[combined["dataset"] == "iemocap", "dialog"].notna().all()
    assert combined.loc[combined["dataset"] == "msp-improv", "part"].notna().all()


def test_unknown_speakers_stay_unknown_when_qualified():
    assert qualified_utt_id("a", "x1") == "a/x1" and qualified_speaker("a", "Ses01F") == "a/Ses01F"
    speaker = qualified_speaker("a", "unknown:x1")
    assert speaker == "unknown:a/x1" and is_unknown_speaker(speaker)


def test_the_same_ids_and_speakers_in_two_corpora_stay_two(manifests):
    """Two corpora in one layout (two synthetic corpora do this): same ids, same speaker names."""
    twins = combine_manifests({"source": manifests["iemocap"], "target": manifests["copy"]})
    assert twins["utt_id"].is_unique and len(twins) == 2 * len(manifests["iemocap"])
    assert twins["speaker"].nunique() == 2 * manifests["iemocap"]["speaker"].nunique()
    table = cross_corpus_folds(
        twins,
        protocol=protocol(corpus_merges={"source": {"exc": "hap"}, "target": {"exc": "hap"}}, test_corpora=("target",)),
    )
    test = table[table["split"] == "test"]
    assert set(test["speaker"].str.split("/").str[0]) == {"target"}
    assert not set(test["speaker"]) & set(table.loc[table["split"] != "test", "speaker"])
    assert set(table["speaker_check"]) == {"independent"}


def test_bad_manifests_are_refused_naming_the_corpus_and_what(manifests):
    iemocap = manifests["iemocap"]
    with pytest.raises(ValueError, match=r"audio file .*Ses01F_impro01_F000.wav is in corpus a and in corpus b"):
        combine_manifests({"a": iemocap, "b": iemocap})  # one recording would train and test
    doubled = pd.concat([iemocap, iemocap.iloc[:1]], ignore_index=True)
    with pytest.raises(ValueError, match="corpus a: utterance id Ses01F_impro01_F000 appears twice"):
        combine_manifests({"a": doubled, "b": manifests["msp-improv"]})
    with pytest.raises(ValueError, match="corpus name 'a/b' must be non-empty and without '/'"):
        combine_manifests({"a/b": iemocap, "b": manifests["msp-improv"]})
    with pytest.raises(ValueError, match="at least 2 corpora"):
        combine_manifests({"a": iemocap})


def test_a_fold_tests_on_the_target_corpus_and_trains_and_validates_on_the_source(combined):
    table = cross_corpus_folds(combined, protocol=protocol())
    assert sorted(table["fold"].unique()) == [1]
    corpus = table["speaker"].str.split("/").str[0]
    assert set(corpus[table["split"] == "test"]) == {"msp-improv"}
    assert set(corpus[table["split"] != "test"]) == {"iemocap"}  # train and valid: the training corpus only
    valid = table.loc[table["split"] == "valid", ["speaker"]].drop_duplicates()
    assert len(valid) == 2 and {s[-1] for s in valid["speaker"]} == {"F", "M"}
    assert set(table.loc[table["split"] == "train", "search_role"]) == {"weights", "alphas"}
    assert set(table["speaker_check"]) == {"independent"}
    # Every MSP-IMPROV speaker is tested (oth and xxx are not classes: left out), every IEMOCAP one trains.
    assert table.loc[table["split"] == "test", "speaker"].nunique() == 6
    assert set(table["label"]) == set(CLASSES)
    assert fold_corpora(table, combined)[1].label == "iemocap->msp-improv"
    # Inner folds come from the outer fold's non-test speakers: the training corpus only.
    inner = make_inner_folds(table, n_inner=2)
    inner_corpus = inner["speaker"].str.split("/").str[0]
    assert set(inner_corpus[inner["split"] != "test"]) == {"iemocap"}


def test_the_class_mapping_is_per_corpus(combined):
    table = cross_corpus_folds(combined, protocol=protocol())
    labels = table.merge(combined[["utt_id", "label", "dataset"]].rename(columns={"label": "raw"}), on="utt_id")
    iemocap, msp = labels[labels["dataset"] == "iemocap"], labels[labels["dataset"] == "msp-improv"]
    assert set(iemocap.loc[iemocap["raw"] == "exc", "label"]) == {"hap"}  # IEMOCAP's exc joins hap
    assert not set(msp["raw"]) - set(CLASSES)  # MSP-IMPROV's oth and xxx map to nothing: left out
    mapping = class_mapping(combined, protocol=protocol()).set_index(["corpus", "class"])
    assert mapping.loc[("iemocap", "hap"), "raw_labels"] == "hap+exc"
    assert mapping.loc[("msp-improv", "hap"), "raw_labels"] == "hap"
    iemocap_rows = combined[combined["dataset"] == "iemocap"]
    assert mapping.loc[("iemocap", "hap"), "utterances"] == iemocap_rows["label"].isin(["hap", "exc"]).sum() > 0
    # Without IEMOCAP's merge, exc is nobody's class: left out.
    plain = class_mapping(combined, protocol=protocol(corpus_merges={"iemocap": {}, "msp-improv": {}}))
    assert plain.set_index(["corpus", "class"]).loc[("iemocap", "hap"), "raw_labels"] == "hap"


def test_leave_one_corpus_out_has_a_fold_per_test_corpus(combined):
    table = cross_corpus_folds(combined, protocol=protocol(test_corpora=("msp-improv", "iemocap")))
    assert {fold: corpora.label for fold, corpora in fold_corpora(table, combined).items()} == {
        1: "iemocap->msp-improv",
        2: "msp-improv->iemocap",
    }
    only_two = cross_corpus_folds(combined, protocol=protocol(test_corpora=("msp-improv", "iemocap")), folds=[2])
    assert sorted(only_two["fold"].unique()) == [2]
    with pytest.raises(ValueError, match=r"fold 3 does not exist; the cross-corpus scheme has folds \[1, 2\]"):
        cross_corpus_folds(combined, protocol=protocol(test_corpora=("msp-improv", "iemocap")), folds=[3])


def test_bad_protocols_and_mappings_name_what_is_wrong(combined):
    with pytest.raises(ValueError, match="corpus iemocap: merge exc=happy: target 'happy' is not among classes"):
        protocol(corpus_merges={"iemocap": {"exc": "happy"}, "msp-improv": {}})
    with pytest.raises(ValueError, match="test_corpora: unknown corpus msp; the corpora are iemocap, msp-improv"):
        protocol(test_corpora=("msp",))
    with pytest.raises(ValueError, match="the fold testing on msp-improv has no training corpus"):
        protocol(train_corpora=("msp-improv",))
    with pytest.raises(ValueError, match="scheme cross-corpus needs classes"):
        protocol(classes=None)
    with pytest.raises(ValueError, match="belong to scheme cross-corpus"):
        FoldProtocol(scheme="loso", test_corpora=("a",))
    with pytest.raises(ValueError, match="come from trainers.cross_corpus.cross_corpus_folds"):
        make_folds(combined, protocol=protocol())
    # A class the training corpus never shows could not be learnt: refused, naming fold, corpus and class.
    with pytest.raises(ValueError, match=r"fold 1 \(iemocap -> msp-improv\): class\(es\) oth have no utterance"):
        cross_corpus_folds(combined, protocol=protocol(classes=("neu", "hap", "oth")))
    # A protocol corpus the manifest lacks, and a manifest corpus the protocol does not name.
    elsewhere = protocol(corpus_merges={"iemocap": {}, "other": {}}, test_corpora=("other",))
    with pytest.raises(ValueError, match="corpus\\(es\\) other have no utterance in the manifest"):
        cross_corpus_folds(combined, protocol=elsewhere)
    with pytest.raises(ValueError, match="corpus\\(es\\) msp-improv that the protocol does not name"):
        class_mapping(combined, protocol=elsewhere)


def test_a_cross_corpus_fold_table_is_written_and_read_back(combined, tmp_path):
    table = cross_corpus_folds(combined, protocol=protocol())
    path = write_folds(table, tmp_path / "folds.parquet", protocol=protocol(), manifest_path=tmp_path / "m.parquet")
    again, stored = read_folds(path)
    assert again.equals(table)
    assert stored["scheme"] == "cross-corpus" and stored["test_corpora"] == ["msp-improv"]
    assert stored["corpus_merges"] == {"iemocap": {"exc": "hap"}, "msp-improv": {}}
