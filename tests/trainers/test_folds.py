import pandas as pd
import pytest

from conftest import build_fake_iemocap
from trainers.folds import (
    FoldProtocol,
    check_folds,
    make_folds,
    make_inner_folds,
    parse_merges,
    protocol_classes,
    read_folds,
    write_folds,
)
from trainers.manifest import build_manifest


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    corpus = build_fake_iemocap(tmp_path_factory.mktemp("iemocap"), sessions=(1, 2, 3, 4, 5), per_dialog=6)
    return build_manifest(dataset="iemocap", root=corpus.root).frame


def _assert_speaker_independent(table):
    for fold, rows in table.groupby("fold"):
        test = set(rows.loc[rows.split == "test", "speaker"])
        assert test and not test & set(rows.loc[rows.split != "test", "speaker"]), fold
        valid = set(rows.loc[rows.split == "valid", "speaker"])
        assert valid and not valid & set(rows.loc[rows.split == "train", "speaker"]), fold


def test_speaker_pairs_are_the_papers_five_folds(manifest):
    table = make_folds(manifest, protocol=FoldProtocol(scheme="speaker-pairs"))
    tests = {fold: sorted(set(rows.loc[rows.split == "test", "speaker"])) for fold, rows in table.groupby("fold")}
    assert tests == {
        1: ["Ses01M", "Ses02F"],
        2: ["Ses02M", "Ses03F"],
        3: ["Ses03M", "Ses04F"],
        4: ["Ses04M", "Ses05F"],
        5: ["Ses01F", "Ses05M"],
    }
    _assert_speaker_independent(table)
    # Every utterance of the protocol appears exactly once per fold.
    assert (table.groupby("fold").size() == len(manifest)).all()


def test_loso_tests_on_whole_sessions(manifest):
    table = make_folds(manifest, protocol=FoldProtocol(scheme="loso", valid_speakers=2))
    for fold, rows in table.groupby("fold"):
        assert set(rows.loc[rows.split == "test", "session"]) == {fold}
        valid = rows.loc[rows.split == "valid", ["speaker"]].drop_duplicates()
        assert len(valid) == 2 and {s[-1] for s in valid["speaker"]} == {"F", "M"}  # one of each gender
    _assert_speaker_independent(table)


def test_classes_merges_and_improvised_only(manifest):
    protocol = FoldProtocol(
        scheme="loso", classes=("neu", "hap", "sad", "ang"), merges=parse_merges(["exc=hap"]), improvised_only=True
    )
    table = make_folds(manifest, protocol=protocol)
    kept = manifest[manifest.improvised & manifest.label.isin(["neu", "hap", "sad", "ang", "exc"])]
    assert set(table.loc[table.fold == 1, "utt_id"]) == set(kept.utt_id)
    merged = kept.loc[kept.label == "exc", "utt_id"]
    assert len(merged) > 0 and (table.set_index("utt_id").loc[merged, "label"] == "hap").all()
    assert set(table.label) == {"neu", "hap", "sad", "ang"}


def _valid_speakers(table):
    return {fold: sorted(set(rows.loc[rows.split == "valid", "speaker"])) for fold, rows in table.groupby("fold")}


def test_validation_choice_is_deterministic_by_seed(manifest):
    first = make_folds(manifest, protocol=FoldProtocol(scheme="loso", seed=3))
    again = make_folds(manifest, protocol=FoldProtocol(scheme="loso", seed=3))
    pd.testing.assert_frame_equal(first, again)
    # The seed is used: on this corpus seeds 3 and 4 pick other validation speakers in folds 1, 2 and 5.
    other = make_folds(manifest, protocol=FoldProtocol(scheme="loso", seed=4))
    chosen, chosen_other = _valid_speakers(first), _valid_speakers(other)
    assert [fold for fold in chosen if chosen[fold] != chosen_other[fold]], (chosen, chosen_other)


def test_round_trip_keeps_the_protocol(manifest, tmp_path):
    protocol = FoldProtocol(scheme="speaker-pairs", classes=("neu", "ang"), merges={"fru": "ang"})
    table = make_folds(manifest, protocol=protocol)
    write_folds(table, tmp_path / "folds.parquet", protocol=protocol, manifest_path=tmp_path / "m.parquet")
    loaded, meta = read_folds(tmp_path / "folds.parquet")
    pd.testing.assert_frame_equal(loaded, table)
    assert meta["scheme"] == "speaker-pairs" and meta["classes"] == ["neu", "ang"] and meta["merges"] == {"fru": "ang"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scheme": "kfold"}, "scheme must be one of loso, speaker-pairs"),
        ({"scheme": "loso", "valid_speakers": 0}, "valid_speakers must be >= 1"),
        ({"scheme": "loso", "classes": ("neu",), "merges": {"exc": "hap"}}, "target 'hap' is not among classes"),
    ],
)
def test_bad_protocols_name_the_option(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FoldProtocol(**kwargs)


def test_bad_requests_against_the_data(manifest):
    with pytest.raises(ValueError, match="class\\(es\\) calm have no utterances"):
        make_folds(manifest, protocol=FoldProtocol(scheme="loso", classes=("neu", "calm")))
    with pytest.raises(ValueError, match="leaves no training speaker"):
        make_folds(manifest, protocol=FoldProtocol(scheme="loso", valid_speakers=8))
    with pytest.raises(ValueError, match="must look like SOURCE=TARGET"):
        parse_merges(["exc:hap"])
    two_speakers_in_one_session = manifest.assign(
        speaker=manifest.speaker.where(manifest.session != 1, "Ses01F"),
        gender=manifest.gender.where(manifest.session != 1, "F"),
    )
    with pytest.raises(ValueError, match="one F and one M speaker in each session"):
        make_folds(two_speakers_in_one_session, protocol=FoldProtocol(scheme="speaker-pairs"))


def test_check_folds_catches_leakage():
    leaky = pd.DataFrame(
        {
            "utt_id": ["a", "b", "c"],
            "fold": 1,
            "split": ["train", "valid", "test"],
            "speaker": ["s1", "s2", "s1"],
            "label": "neu",
            "session": 1,
        }
    )
    with pytest.raises(RuntimeError, match="test speaker\\(s\\) \\['s1'\\] also in train/valid"):
        check_folds(leaky)


def _layout_manifest(sessions: int, *, per_speaker: int = 8) -> pd.DataFrame:
    """A manifest of ``sessions`` sessions with one F and one M speaker each (IEMOCAP: 5, MSP-IMPROV: 6)."""
    rows = [
        {
            "utt_id": f"S{s}{g}_{i}",
            "speaker": f"S{s}{g}",
            "gender": g,
            "session": s,
            "label": ("neu", "hap", "sad", "ang")[i % 4],
            "improvised": True,
        }
        for s in range(1, sessions + 1)
        for g in ("F", "M")
        for i in range(per_speaker)
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("layout, sessions", [("iemocap", 5), ("synthetic", 5), ("msp-improv", 6)])
@pytest.mark.parametrize("scheme", ["loso", "speaker-pairs"])
def test_every_speaker_has_exactly_one_role_and_default_roles_are_non_empty(layout, sessions, scheme):
    manifest = _layout_manifest(sessions)
    table = make_folds(manifest, protocol=FoldProtocol(scheme=scheme))
    assert (table.groupby("fold").size() == len(manifest)).all()
    for fold, rows in table.groupby("fold"):
        roles = {
            "test": set(rows.loc[rows.split == "test", "speaker"]),
            "valid": set(rows.loc[rows.split == "valid", "speaker"]),
            "weights": set(rows.loc[rows.search_role == "weights", "speaker"]),
            "alphas": set(rows.loc[rows.search_role == "alphas", "speaker"]),
        }
        assert all(roles.values()), (fold, roles)  # every role non-empty
        assert len(roles["valid"]) == 2 and {s[-1] for s in roles["valid"]} == {"F", "M"}
        everyone = [speaker for group in roles.values() for speaker in group]
        assert sorted(everyone) == sorted(set(manifest.speaker)), fold  # each speaker in exactly one role
        # No utterance serves two roles: train rows and only they carry a search role.
        assert rows.loc[rows.split == "train", "search_role"].notna().all()
        assert rows.loc[rows.split != "train", "search_role"].isna().all()
        # Two halves, balanced by gender where the corpus allows.
        assert abs(len(roles["weights"]) - len(roles["alphas"])) <= 1
        if len(roles["alphas"]) >= 2:
            assert {s[-1] for s in roles["alphas"]} == {"F", "M"}


def test_roles_are_seeded_and_checked(tmp_path):
    manifest = _layout_manifest(5)
    first = make_folds(manifest, protocol=FoldProtocol(scheme="speaker-pairs", seed=0))
    assert first.equals(make_folds(manifest, protocol=FoldProtocol(scheme="speaker-pairs", seed=0)))
    other = make_folds(manifest, protocol=FoldProtocol(scheme="speaker-pairs", seed=1))
    assert not first["search_role"].equals(other["search_role"])
    # A weight speaker who also trains alphas is caught.
    broken = first.copy()
    speaker = broken.loc[(broken.fold == 1) & (broken.search_role == "weights"), "speaker"].iloc[0]
    one = broken.index[(broken.fold == 1) & (broken.speaker == speaker)][0]
    broken.loc[one, "search_role"] = "alphas"
    with pytest.raises(RuntimeError, match=f"fold 1: speaker.*{speaker}.*more than one role"):
        check_folds(broken)
    # A fold table written before speaker roles existed is refused with advice.
    old = tmp_path / "old.parquet"
    first.drop(columns=["search_role"]).to_parquet(old)
    with pytest.raises(ValueError, match="predates speaker roles"):
        read_folds(old)


def test_inner_folds_partition_an_outer_folds_non_test_speakers_and_keep_its_test_speakers(manifest):
    table = make_folds(manifest, protocol=FoldProtocol(scheme="speaker-pairs"))
    genders = dict(zip(manifest["speaker"], manifest["gender"]))
    outer = table[table["fold"] == 2]
    inner = make_inner_folds(outer, n_inner=4, arch_share=0.5, seed=0, genders=genders)
    assert sorted(inner["inner_fold"].unique()) == [1, 2, 3, 4]
    test = set(outer.loc[outer["split"] == "test", "speaker"])
    valid_groups = []
    for number, rows in inner.groupby("inner_fold"):
        assert set(rows.loc[rows["split"] == "test", "speaker"]) == test, number  # scored, never used to choose
        assert len(rows) == len(outer) and set(rows["utt_id"]) == set(outer["utt_id"])
        valid = set(rows.loc[rows["split"] == "valid", "speaker"])
        assert len(valid) == 2 and {genders[s] for s in valid} == {"F", "M"}, number  # gender-balanced
        assert set(rows.loc[rows["search_role"] == "alphas", "speaker"])  # the search has alpha speakers
        valid_groups.append(valid)
    non_test = set(outer["speaker"]) - test
    assert set().union(*valid_groups) == non_test and sum(map(len, valid_groups)) == len(non_test)  # a partition
    again = make_inner_folds(outer, n_inner=4, arch_share=0.5, seed=0, genders=genders)
    assert again.equals(inner)  # the same on every node: seeded
    other = make_inner_folds(outer, n_inner=4, arch_share=0.5, seed=1, genders=genders)
    assert not other.equals(inner)


def test_inner_folds_refuse_what_cannot_be_built(manifest):
    outer = make_folds(manifest, protocol=FoldProtocol(scheme="speaker-pairs"))
    with pytest.raises(ValueError, match="folds.inner = 8 needs at least 9 non-test speakers in fold 1"):
        make_inner_folds(outer[outer["fold"] == 1], n_inner=8)
    with pytest.raises(ValueError, match="takes the rows of one outer fold"):
        make_inner_folds(outer, n_inner=2)


def test_protocol_classes_keep_the_given_order_else_sort_the_labels() -> None:
    folds = pd.DataFrame({"label": ["sad", "ang", "neu", "ang"]})
    assert protocol_classes(folds) == ("ang", "neu", "sad")
    assert protocol_classes(folds, classes=["neu", "sad", "ang"]) == ("neu", "sad", "ang")  # the config's numbering
