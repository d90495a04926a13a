"""Test speakers choose nothing: rows whose test-UA order is the reverse of their validation-UA
order leave the ranking, the nested estimate's picks, the report's best and export's choice
following validation (real Parquet parts, real DuckDB, no Ray)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from conftest import make_leaderboard_row
from orchestrator.export import choose_runs
from orchestrator.leaderboard import connect, write_fold_row
from orchestrator.report import write_report
from orchestrator.selection import OBJECTIVE, nested_estimates

# Per trial: validation UA on folds 1-3, and the test UA on them (reverse order of validation).
VALID = {"t1": [0.70, 0.72, 0.68], "t2": [0.60, 0.61, 0.63], "t3": [0.50, 0.52, 0.49]}
TEST = {"t1": [0.42, 0.40, 0.41], "t2": [0.55, 0.50, 0.52], "t3": [0.80, 0.79, 0.81]}
HASHES = {"t1": "aaaaaaaaaaaa", "t2": "bbbbbbbbbbbb", "t3": "cccccccccccc"}


@pytest.fixture
def reversed_board(tmp_path: Path) -> Path:
    for trial, valid in VALID.items():
        for fold, (valid_ua, test_ua) in enumerate(zip(valid, TEST[trial]), start=1):
            write_fold_row(
                tmp_path,
                make_leaderboard_row(
                    trial_id=trial,
                    fold=fold,
                    valid_ua=valid_ua,
                    ua=test_ua,
                    genotype_hash=HASHES[trial],
                    best_epoch=fold + 1,
                ),
            )
    return tmp_path


def test_rankings_follow_validation_and_test_only_on_request(reversed_board: Path) -> None:
    with connect(reversed_board) as board:
        assert board.summary("trial")["trial_id"].tolist() == ["t1", "t2", "t3"]
        assert board.summary("genotype")["genotype_hash"].tolist() == [HASHES[t] for t in ("t1", "t2", "t3")]
        assert board.summary("config")["rank"].tolist() == [1]  # one config (same params): nothing to order
        assert board.sql("SELECT trial_id FROM trial_scores ORDER BY rank")["trial_id"].tolist() == ["t1", "t2", "t3"]
        assert board.summary("trial", rank_by="test")["trial_id"].tolist() == ["t3", "t2", "t1"]
        with pytest.raises(ValueError, match="rank_by must be one of"):
            board.summary("trial", rank_by="luck")


def test_nested_estimate_picks_by_validation_and_reports_test(reversed_board: Path) -> None:
    with connect(reversed_board) as board:
        estimate = nested_estimates(board)["exp"]
    assert [pick.trial_id for pick in estimate.picks] == ["t1", "t1", "t1"]
    assert estimate.mean_test_ua == pytest.approx(sum(TEST["t1"]) / 3)
    assert estimate.std_test_ua == pytest.approx(0.01)
    # The optimistic number is the best mean test UA over complete trials: t3's, far above.
    assert estimate.best_mean_test_ua == pytest.approx(0.80) and estimate.best_trial_by_test == "t3"
    assert estimate.gap == pytest.approx(0.80 - 0.41)
    assert "nested estimate UA 0.410 ± 0.010 (3/3 folds" in estimate.headline()
    assert estimate.to_dict()["gap"] == pytest.approx(0.39)


def test_nested_estimate_breaks_validation_ties_by_trial_id_not_by_test(tmp_path: Path) -> None:
    for trial, test_ua in (("t1", 0.30), ("t2", 0.90)):
        write_fold_row(tmp_path, make_leaderboard_row(trial_id=trial, fold=1, n_folds=1, valid_ua=0.5, ua=test_ua))
    with connect(tmp_path) as board:
        estimate = nested_estimates(board)["exp"]
    assert [pick.trial_id for pick in estimate.picks] == ["t1"] and estimate.mean_test_ua == pytest.approx(0.30)
    assert math.isnan(estimate.std_test_ua)


def test_export_chooses_the_genotype_and_its_run_by_validation(reversed_board: Path) -> None:
    runs, estimate = choose_runs(str(reversed_board), experiment=None, rank=None, genotype=None)
    assert set(runs["genotype_hash"]) == {HASHES["t1"]}
    assert runs.iloc[0]["fold"] == 2  # t1's best validation UA (0.72); its best test UA is on fold 1
    assert runs["valid_ua"].tolist() == sorted(VALID["t1"], reverse=True)
    assert estimate is not None and estimate.picks[0].trial_id == "t1"
    second, _ = choose_runs(str(reversed_board), experiment=None, rank=2, genotype=None)
    assert set(second["genotype_hash"]) == {HASHES["t2"]}


def test_report_best_trial_and_genotype_follow_validation(reversed_board: Path, tmp_path: Path) -> None:
    page = write_report(reversed_board, experiment="exp", out=tmp_path / "report.html").read_text(encoding="utf-8")
    estimate = page[page.index('<section id="estimate">') : page.index('<section id="ranked">')]
    assert "Nested estimate (publish this): <strong>UA 0.4100 ± 0.0100</strong>" in estimate
    assert "Optimistic best mean test UA over 3 complete trial(s): <strong>0.8000</strong>" in estimate
    assert "Trial <code>t1</code>" in page[page.index('<section id="confusion">') :]
    ranked = page[page.index('<section id="ranked">') : page.index('<section id="pareto">')]
    assert ranked.index(">t1<") < ranked.index(">t2<") < ranked.index(">t3<")
    assert "mean_test_ua" in ranked and "mean_valid_ua" in ranked


def test_the_searcher_and_tune_maximise_mean_validation_ua(tmp_path: Path) -> None:
    from conftest import write_experiment_config
    from orchestrator.config import load_config
    from orchestrator.experiment import _searcher

    config = load_config(write_experiment_config(tmp_path / "x.yaml", name="objective"))
    assert OBJECTIVE == "mean_valid_ua"
    assert _searcher(config)._metric == OBJECTIVE
