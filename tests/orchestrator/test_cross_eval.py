"""sernas cross-eval: candidates chosen by validation, the seen-speakers flag, and a real run end to end."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conftest import make_leaderboard_row
from conftest import write_experiment_config as write_config
from orchestrator.candidates import Candidate, seen_in_search
from orchestrator.cli import main
from orchestrator.cross_eval import choose_candidates
from orchestrator.leaderboard import connect, cross_eval_summary, write_fold_row
from search_space.architecture import architecture_key, parse_architecture

GENOTYPE = (
    '{"normal": [["sep_conv_3x3", 0], ["skip_connect", 1]], "normal_concat": [2], '
    '"reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]], "reduce_concat": [2]}'
)


def _folds() -> pd.DataFrame:
    """Three LOSO folds over sessions of two speakers: fold k tests session k, validates on the next."""
    rows = []
    for fold in (1, 2, 3):
        for session in (1, 2, 3):
            split = "test" if session == fold else "valid" if session == fold % 3 + 1 else "train"
            for speaker in (f"S{session}F", f"S{session}M"):
                rows.append({"fold": fold, "speaker": speaker, "split": split, "utt_id": f"{speaker}-{fold}"})
    return pd.DataFrame(rows)


def test_seen_speakers_are_every_fold_but_the_genotypes_own() -> None:
    folds = _folds()
    assert [seen_in_search(folds, found_on=[2], fold=fold) for fold in (1, 2, 3)] == [True, False, True]
    assert [seen_in_search(folds, found_on=[1, 2], fold=fold) for fold in (1, 2, 3)] == [True, True, True]
    assert seen_in_search(folds, found_on=[], fold=1) is None  # the baseline: no search found it
    only_train = folds[~((folds["fold"] == 2) & (folds["split"] == "valid"))]  # validation speakers count too
    assert seen_in_search(only_train, found_on=[2], fold=3) is False


def test_a_candidate_travels_as_json() -> None:
    candidate = Candidate(
        architecture="baseline", genotype_hash="baseline", source_trial_id="t", source_fold=2, found_on=(2, 3)
    )
    assert Candidate.from_json(candidate.to_json()) == candidate


def _search_rows(storage: Path) -> None:
    """Genotype g1 is best by validation, g2 best by test: --top 1 must take g1."""
    g2 = GENOTYPE.replace("max_pool_3x3", "avg_pool_3x3")
    assert g2 != GENOTYPE
    for trial, fold, genotype, valid, ua in [("t1", 1, GENOTYPE, 0.8, 0.3), ("t2", 2, g2, 0.5, 0.9)]:
        key = architecture_key(parse_architecture(genotype))
        write_fold_row(
            storage,
            make_leaderboard_row(
                trial_id=trial, fold=fold, genotype=genotype, genotype_hash=key, valid_ua=valid, test_ua=ua
            ),
        )


def test_top_chooses_by_validation_and_genotype_adds(tmp_path: Path) -> None:
    _search_rows(tmp_path)
    chosen = choose_candidates(str(tmp_path), experiment="exp", top=1, genotypes=["baseline"])
    assert [(c.source_trial_id, c.source_fold, c.found_on) for c in chosen] == [("t1", 1, (1,)), (None, None, ())]
    assert chosen[1].genotype_hash == "baseline" and chosen[1].params is None
    assert chosen[0].params == {"layers": 4, "seed": 0}
    again = choose_candidates(str(tmp_path), experiment="exp", top=2, genotypes=[chosen[0].genotype_hash])
    assert [c.source_trial_id for c in again] == ["t1", "t2"]  # no repeats


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "give --top N and/or --genotype"),
        (["--top", "0"], "--top must be >= 1"),
        (["--genotype", "baseline", "--seeds", "0"], "--seeds must be >= 1"),
        (["--genotype", "nonsense"], "--genotype 'nonsense' is neither"),
        (["--genotype", "abcdefabcdef"], "--genotype abcdefabcdef: no finished search row"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path: Path, capsys, arguments: list[str], message: str) -> None:
    _search_rows(tmp_path / "runs")  # the genotype flags are checked before the prepared data is read
    code = main(["cross-eval", "--storage", str(tmp_path / "runs"), "--experiment", "exp", *arguments])
    assert code == 2
    assert message in capsys.readouterr().err


def test_a_missing_experiment_is_a_clear_error(tmp_path: Path, capsys) -> None:
    code = main(["cross-eval", "--storage", str(tmp_path), "--experiment", "nope", "--genotype", "baseline"])
    assert code == 2 and "cross-eval needs the prepared data of the experiment 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_cross_eval_end_to_end(local_ray, tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path / "exp.yaml", name="xe", samples=2, eval_epochs=1, per_speaker=8)
    storage = str(tmp_path / "runs")
    assert main(["search", "--config", str(config)]) == 0
    with connect(storage, experiment="xe") as board:
        genotypes_before = board.summary("genotype")
        top = genotypes_before["genotype_hash"].iloc[0]
    capsys.readouterr()
    arguments = ["--storage", storage, "--experiment", "xe", "--top", "1", "--genotype", "baseline", "--seeds", "1"]
    assert main(["cross-eval", *arguments]) == 0
    out = capsys.readouterr().out
    assert "2 trials (2 completed, 0 failed)" in out and "Cross-eval of xe, ranked by mean validation UA" in out
    assert (tmp_path / "runs" / "xe-cross-eval").is_dir()  # its own Tune folder; rows under the experiment
    with connect(storage, experiment="xe") as board:
        pd.testing.assert_frame_equal(board.summary("genotype"), genotypes_before)  # search views: unchanged
        rows = board.sql("SELECT * FROM runs WHERE stage = 'cross-eval' ORDER BY genotype_hash, fold")
        table = cross_eval_summary(board, experiment="xe").set_index("genotype_hash")
    assert len(rows) == 4 and set(rows["status"]) == {"completed"} and (rows["search_seconds"] == 0).all()
    assert set(rows["genotype_hash"]) == {top, "baseline"}
    searched = rows[rows["genotype_hash"] == top]
    source_fold = int(searched["source_fold"].iloc[0])
    assert searched["source_trial_id"].notna().all()
    assert dict(zip(searched["fold"], searched["test_seen_in_search"])) == {
        fold: fold != source_fold for fold in (1, 2)
    }
    baseline = rows[rows["genotype_hash"] == "baseline"]
    assert baseline["source_fold"].isna().all() and baseline["test_seen_in_search"].isna().all()
    assert set(table.index) == {top, "baseline"} and table["complete"].all() and (table["folds_covered"] == 2).all()
    assert table.loc[top, "baseline_pairs"] == 2 and table.loc[top, "seen_folds"] == 1

    assert main(["leaderboard", "--storage", storage, "--experiment", "xe", "--by", "cross-eval"]) == 0
    assert "cross-eval rows only" in capsys.readouterr().out
    model = tmp_path / "baseline.pt"  # a genotype with cross-eval rows only exports too
    arguments = ["--storage", storage, "--experiment", "xe", "--genotype", "baseline", "--device", "cpu"]
    assert main(["export", *arguments, "--out", str(model)]) == 0 and model.is_file()
