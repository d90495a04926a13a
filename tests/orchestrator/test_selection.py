"""Test speakers choose nothing: rows whose test-UA order is the reverse of their validation-UA
order leave the ranking, the nested estimate's picks, the report's best and export's choice
following validation (real Parquet parts, real DuckDB, no Ray)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from conftest import make_leaderboard_row
from orchestrator.export import choose_runs
from orchestrator.leaderboard import connect, write_fold_row, write_trial_status
from orchestrator.report import write_report
from orchestrator.selection import OBJECTIVE, nested_estimates

# Per trial kind: validation UA on outer folds 1-3, and the test UA there (reverse order of
# validation). Nested rows: every trial belongs to one outer fold (its study), with two inner folds.
VALID = {"t1": [0.70, 0.72, 0.68], "t2": [0.60, 0.61, 0.63], "t3": [0.50, 0.52, 0.49]}
TEST = {"t1": [0.42, 0.40, 0.41], "t2": [0.55, 0.50, 0.52], "t3": [0.80, 0.79, 0.81]}
HASHES = {"t1": "aaaaaaaaaaaa", "t2": "bbbbbbbbbbbb", "t3": "cccccccccccc"}


def nested_rows(storage: Path, trial: str, *, fold: int, valid_ua: float, test_ua: float, status: str = "completed"):
    """A trial of outer fold ``fold`` with two inner folds (valid UA spread around ``valid_ua``)."""
    for inner, shift in ((1, -0.01), (2, 0.01)):
        write_fold_row(
            storage,
            make_leaderboard_row(
                trial_id=trial,
                fold=fold,
                outer_fold=fold,
                inner_fold=inner,
                n_inner_folds=2,
                valid_ua=valid_ua + shift,
                test_ua=test_ua,
                genotype_hash=HASHES[trial.split("-")[0]],
                best_epoch=fold + 1,
            ),
        )
    write_trial_status(storage, experiment="exp", trial_id=trial, status=status, step=1)


@pytest.fixture
def reversed_board(tmp_path: Path) -> Path:
    for trial, valid in VALID.items():
        for fold, (valid_ua, test_ua) in enumerate(zip(valid, TEST[trial]), start=1):
            nested_rows(tmp_path, f"{trial}-f{fold}", fold=fold, valid_ua=valid_ua, test_ua=test_ua)
    return tmp_path


def test_rankings_follow_validation_and_test_only_on_request(reversed_board: Path) -> None:
    with connect(reversed_board) as board:
        kinds = [trial.split("-")[0] for trial in board.summary("trial")["trial_id"]]
        assert kinds == ["t1"] * 3 + ["t2"] * 3 + ["t3"] * 3
        assert board.summary("genotype")["genotype_hash"].tolist() == [HASHES[t] for t in ("t1", "t2", "t3")]
        assert board.summary("config")["rank"].tolist() == [1]  # one config (same params): nothing to order
        by_view = board.sql("SELECT trial_id FROM trial_scores ORDER BY rank")["trial_id"]
        assert [trial.split("-")[0] for trial in by_view][:3] == ["t1"] * 3
        assert board.summary("trial", rank_by="test")["trial_id"].tolist()[:3] == ["t3-f3", "t3-f1", "t3-f2"]
        with pytest.raises(ValueError, match="rank_by must be one of"):
            board.summary("trial", rank_by="luck")


def test_nested_estimate_picks_by_validation_and_reports_test(reversed_board: Path) -> None:
    with connect(reversed_board) as board:
        estimate = nested_estimates(board)["exp"]
    assert [pick.trial_id for pick in estimate.picks] == ["t1-f1", "t1-f2", "t1-f3"]
    assert [pick.candidates for pick in estimate.picks] == [3, 3, 3]  # each outer fold's study chose among its own
    assert estimate.picks[1].valid_ua == pytest.approx(0.72)  # the mean over its inner folds
    assert estimate.mean_test_ua == pytest.approx(sum(TEST["t1"]) / 3)
    assert estimate.std_test_ua == pytest.approx(0.01)
    # The optimistic number lets test choose on each fold: t3's, far above.
    assert [pick.oracle_trial_id for pick in estimate.picks] == ["t3-f1", "t3-f2", "t3-f3"]
    assert estimate.best_mean_test_ua == pytest.approx(0.80)
    assert estimate.gap == pytest.approx(0.80 - 0.41)
    assert "nested estimate UA 0.410 ± 0.010 (3/3 outer folds" in estimate.headline()
    assert estimate.to_dict()["gap"] == pytest.approx(0.39)


def test_the_pooled_nested_estimate_reads_the_chosen_trials_predictions_once_per_utterance(
    reversed_board: Path,
) -> None:
    """Every outer fold's test utterances once, as the trial validation chose (t1, right on half
    of each class) predicted them, never the trial test would have chosen (t3, right on all)."""
    import pandas as pd

    from orchestrator.leaderboard import write_predictions

    classes = list(make_leaderboard_row()["classes"])
    for trial in VALID:
        for fold in (1, 2, 3):
            utterances = [f"f{fold}-u{i}" for i in range(2 * len(classes))]
            labels = [classes[i % len(classes)] for i in range(len(utterances))]
            right = [trial == "t3" or i < len(classes) for i in range(len(utterances))]
            frame = pd.DataFrame(
                {
                    "split": "test",
                    "utt_id": utterances,
                    "speaker": [f"f{fold}-speaker{i % 2}" for i in range(len(utterances))],
                    "label": labels,
                    "predicted": [
                        label if ok else classes[(classes.index(label) + 1) % len(classes)]
                        for label, ok in zip(labels, right)
                    ],
                    "probabilities": [[1.0 / len(classes)] * len(classes)] * len(utterances),
                }
            )
            for inner in (1, 2):
                write_predictions(
                    reversed_board,
                    frame,
                    experiment="exp",
                    stage="search",
                    trial_id=f"{trial}-f{fold}",
                    fold=fold,
                    inner_fold=inner,
                    attempt=make_leaderboard_row()["attempt"],
                )
    with connect(reversed_board) as board:
        pooled = nested_estimates(board)["exp"].pooled
    assert pooled.ua == pytest.approx(0.5) and pooled.wa == pytest.approx(0.5)
    assert pooled.utterances == 3 * 2 * len(classes) and pooled.speakers == 6 and pooled.networks == 2
    assert pooled.ua_interval[0] <= 0.5 <= pooled.ua_interval[1]
    assert "pooled UA 0.500 [" in nested_estimates_headline(reversed_board)


def nested_estimates_headline(storage: Path) -> str:
    with connect(storage) as board:
        return nested_estimates(board)["exp"].headline()


def test_only_trials_their_study_completed_are_chosen(reversed_board: Path) -> None:
    """A pruned trial (or one that never finished its inner folds) is no candidate, however good."""
    nested_rows(reversed_board, "t3-pruned", fold=1, valid_ua=0.95, test_ua=0.10, status="pruned")
    nested_rows(reversed_board, "t3-running", fold=2, valid_ua=0.95, test_ua=0.10, status="running")
    with connect(reversed_board) as board:
        estimate = nested_estimates(board)["exp"]
    assert [pick.trial_id for pick in estimate.picks] == ["t1-f1", "t1-f2", "t1-f3"]


def test_rows_before_nesting_pick_per_fold_and_break_ties_by_trial_id_not_by_test(tmp_path: Path) -> None:
    for trial, test_ua in (("t1", 0.30), ("t2", 0.90)):
        write_fold_row(tmp_path, make_leaderboard_row(trial_id=trial, fold=1, n_folds=1, valid_ua=0.5, test_ua=test_ua))
    with connect(tmp_path) as board:
        estimate = nested_estimates(board)["exp"]
    assert [pick.trial_id for pick in estimate.picks] == ["t1"] and estimate.mean_test_ua == pytest.approx(0.30)
    assert math.isnan(estimate.std_test_ua)


def test_export_chooses_the_genotype_and_its_run_by_validation(reversed_board: Path) -> None:
    runs, estimate = choose_runs(str(reversed_board), experiment=None, rank=None, genotype=None)
    assert set(runs["genotype_hash"]) == {HASHES["t1"]}
    assert runs.iloc[0]["fold"] == 2  # t1's best validation UA (0.72); its best test UA is on fold 1
    assert runs["valid_ua"].tolist() == sorted(runs["valid_ua"], reverse=True)
    assert estimate is not None and estimate.picks[0].trial_id == "t1-f1"
    second, _ = choose_runs(str(reversed_board), experiment=None, rank=2, genotype=None)
    assert set(second["genotype_hash"]) == {HASHES["t2"]}


def test_report_best_trial_and_genotype_follow_validation(reversed_board: Path, tmp_path: Path) -> None:
    page = write_report(reversed_board, experiment="exp", out=tmp_path / "report.html").read_text(encoding="utf-8")
    estimate = page[page.index('<section id="estimate">') : page.index('<section id="ranked">')]
    assert "Nested estimate (publish this): <strong>UA 0.4100 ± 0.0100</strong>" in estimate
    assert "among 9 complete trial(s)): <strong>0.8000</strong>" in estimate
    assert "Trial <code>t1-f2</code>" in page[page.index('<section id="confusion">') :]
    ranked = page[page.index('<section id="ranked">') : page.index('<section id="pareto">')]
    assert ranked.index(">t1-f2<") < ranked.index(">t2-f3<") < ranked.index(">t3-f2<")
    assert "mean_test_ua" in ranked and "mean_valid_ua" in ranked


def test_each_outer_fold_study_maximises_mean_validation_ua(tmp_path: Path) -> None:
    from orchestrator.study import StudyHandle, trial_outcome

    study = StudyHandle(storage=str(tmp_path), experiment="objective").open(fold=1)
    assert [direction.name for direction in study.directions] == ["MAXIMIZE"]
    done = {OBJECTIVE: 0.6, "folds_done": 3, "n_folds": 3}
    assert trial_outcome(done, error=False, objective=OBJECTIVE, multi_objective=False).values == (0.6,)
    partial = {**done, "folds_done": 1}  # a partial mean never counts as a full objective
    assert trial_outcome(partial, error=False, objective=OBJECTIVE, multi_objective=False).state.name == "FAIL"


def test_a_cross_corpus_estimate_is_stated_per_test_corpus(tmp_path: Path) -> None:
    """Leave-one-corpus-out over two corpora: one outer fold per test corpus, each stated on its own."""
    corpora = {1: "b->a", 2: "a->b"}  # fold 1 tests on corpus a (trains on b), fold 2 the other way round
    for fold, dataset in corpora.items():
        for trial, valid_ua, test_ua in (("t1", 0.7, 0.4 + fold / 10), ("t2", 0.6, 0.9)):
            write_fold_row(
                tmp_path,
                make_leaderboard_row(
                    trial_id=f"{trial}-f{fold}",
                    fold=fold,
                    outer_fold=fold,
                    n_folds=2,
                    dataset=dataset,
                    fold_scheme="cross-corpus",
                    valid_ua=valid_ua,
                    test_ua=test_ua,
                ),
            )
            write_trial_status(tmp_path, experiment="exp", trial_id=f"{trial}-f{fold}", status="completed", step=1)
    with connect(tmp_path) as board:
        estimate = nested_estimates(board)["exp"]
    assert [(pick.fold, pick.dataset, pick.trial_id) for pick in estimate.picks] == [
        (1, "b->a", "t1-f1"),
        (2, "a->b", "t1-f2"),
    ]
    assert estimate.by_dataset() == pytest.approx({"b->a": 0.5, "a->b": 0.6})
    assert "per test corpus: b->a 0.500, a->b 0.600" in estimate.headline()
    assert estimate.to_dict()["by_dataset"] == pytest.approx({"b->a": 0.5, "a->b": 0.6})
    page = write_report(tmp_path, out=tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Per test corpus" in page and "b-&gt;a <strong>0.5000</strong>" in page


def test_one_corpus_states_no_per_corpus_figures(reversed_board: Path) -> None:
    with connect(reversed_board) as board:
        estimate = nested_estimates(board)["exp"]
    assert estimate.by_dataset() == {} and "per test corpus" not in estimate.headline()
    assert {pick.dataset for pick in estimate.picks} == {"synthetic"}
