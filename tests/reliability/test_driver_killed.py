"""Kill the driver of a running experiment with SIGKILL, then finish it with --resume."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from conftest import kill_driver_when, kill_ray_processes_of, write_pruning_config
from conftest import write_experiment_config as write_config
from orchestrator.leaderboard import connect
from orchestrator.pruning import PRUNER_HISTORY, TUNE_TRIAL_ID
from orchestrator.study import StudyHandle

pytestmark = pytest.mark.slow


def _sernas(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _fold_studies(storage: Path, experiment: str) -> dict[int, dict[str, optuna.trial.FrozenTrial]]:
    """Every outer fold's Optuna study (``<experiment>.fold<k>``) as Optuna reads it, by fold, each
    by Tune trial id. Read-only: the driver may be appending (StudyHandle.studies never rewrites the
    journal, and Optuna's reader skips an unfinished last line); nothing before the first trial."""
    handle = StudyHandle(storage=str(storage), experiment=experiment)
    if not handle.journal.exists():
        return {}
    return {
        fold: {trial.user_attrs[TUNE_TRIAL_ID]: trial for trial in study.trials}
        for fold, study in handle.studies().items()
    }


def _study_trials(storage: Path, experiment: str) -> dict[str, optuna.trial.FrozenTrial]:
    """The trials of every outer fold's study together, by Tune trial id (each is in one study)."""
    trials = {}
    for by_id in _fold_studies(storage, experiment).values():
        assert not trials.keys() & by_id.keys(), "a Tune trial in two outer folds' studies"
        trials |= by_id
    return trials


def _searcher_assigned(experiment_dir: Path) -> int:
    """How many trials the searcher had handed out (OuterFoldSearcher's state, saved by Tune with
    the experiment; its history is the studies themselves, in the journal)."""
    # One file per driver session, named by its start time; the newest session's is the latest
    # state (Tune's own rule; mtimes do not tell: a resumed run syncs the old session's files up too).
    state_file = max(experiment_dir.glob("searcher-state-*.pkl"), key=lambda path: path.name)
    return int(json.loads(state_file.read_text())["assigned"])


def test_resume_after_the_driver_is_killed_loses_and_doubles_nothing(tmp_path):
    # 2 trials per outer fold on 2 outer folds (4 trials, one validation split each), 2 at a time
    # (max_concurrent 2): when the first fold row appears, the last two have not started, and with
    # the driver killed they cannot, so the kill always leaves work to resume.
    config = write_config(tmp_path / "resume.yaml", name="resume", samples=2, eval_epochs=3)
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONPATH": os.getcwd()}
    leaderboard = tmp_path / "runs" / "leaderboard" / "resume"
    try:
        first = _sernas("search", "--config", str(config), env=env)
        killed_at = kill_driver_when(
            first,
            lambda: list(leaderboard.rglob("*.parquet")),
            ray_tmp=ray_tmp,
            timeout=240,
            poll=0.5,
            what="the first finished fold",
        )
        with connect(tmp_path / "runs", experiment="resume") as board:
            before = len(board.sql("SELECT * FROM runs WHERE status = 'completed'"))
        assert 1 <= before < 4

        second = _sernas("search", "--config", str(config), "--resume", env=env)
        output, _ = second.communicate(timeout=400)
        assert second.returncode == 0, output
        assert "4 trials (4 completed, 0 pruned, 0 failed)" in output, output
    finally:
        kill_ray_processes_of(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    with connect(tmp_path / "runs", experiment="resume") as board:
        runs = board.sql("SELECT trial_id, fold, inner_fold, status, written_at, valid_ua, test_ua FROM runs")
        trials = board.sql("SELECT trial_id, status FROM trials")
    assert len(runs) == 4 and set(runs["status"]) == {"completed"}  # 4 trials x 1 outer fold each, once
    assert not runs.duplicated(["trial_id", "fold"]).any() and runs.groupby("fold").size().tolist() == [2, 2]
    assert set(trials["status"]) == {"completed"} and len(trials) == 4
    # Every fold missing at the kill was written after it (a fold written just before the kill,
    # before Tune had its checkpoint, may be run again: its newer row replaces the old one).
    assert (pd.to_datetime(runs["written_at"], utc=True) > killed_at).sum() >= 4 - before

    # The Optuna studies: every trial once, in its outer fold's study; each unit's validation UA
    # reported exactly once, at the unit's step (the units before the kill included), test UA beside
    # as attributes (named by the inner fold, or the outer fold without inner folds), the mean as
    # the value.
    study = _study_trials(tmp_path / "runs", "resume")
    assert sorted(study) == sorted(trials["trial_id"])
    for fold, by_id in _fold_studies(tmp_path / "runs", "resume").items():
        for trial_id, trial in by_id.items():
            rows = runs[runs["trial_id"] == trial_id].sort_values("inner_fold")
            assert set(rows["fold"]) == {fold}, (trial_id, fold)
            assert trial.state == TrialState.COMPLETE and len(rows) >= 1
            assert trial.intermediate_values == pytest.approx(dict(enumerate(rows["valid_ua"], start=1)))
            assert trial.value == pytest.approx(rows["valid_ua"].mean())
            names = [fold if pd.isna(inner) else int(inner) for inner in rows["inner_fold"]]
            assert [trial.user_attrs[f"fold{k}_test_ua"] for k in names] == pytest.approx(list(rows["test_ua"]))
    # The searcher's state survived too: Tune saves it with the experiment and restores it on
    # resume. It is the count of trials handed out (its history is the studies above), and it
    # counts every trial once (a lost count would hand the first trials out again).
    assert _searcher_assigned(tmp_path / "runs" / "resume") == len(study)


def test_a_pruning_decision_after_resume_uses_the_trials_finished_before_the_kill(tmp_path):
    """One outer fold whose grid runs the good learning rate first and the frozen one (lr 1e-7) second; the
    median pruner needs one complete trial (n_startup_trials: 1) before it prunes anything. The
    driver is killed once the good trial is complete and before the frozen one reported: after
    --resume only the good trial from before the kill can make the pruner stop the frozen one."""
    config = write_pruning_config(tmp_path / "prune.yaml", name="prune")
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONPATH": os.getcwd()}
    storage = tmp_path / "runs"
    try:
        first = _sernas("search", "--config", str(config), env=env)
        kill_driver_when(
            first,
            lambda: any(t.state == TrialState.COMPLETE for t in _study_trials(storage, "prune").values()),
            ray_tmp=ray_tmp,
            timeout=400,
            poll=0.2,
            what="the good trial's end",
        )
        before = _study_trials(storage, "prune")
        [good] = [trial_id for trial_id, t in before.items() if t.state == TrialState.COMPLETE]
        assert all(not t.intermediate_values for trial_id, t in before.items() if trial_id != good), before

        second = _sernas("search", "--config", str(config), "--resume", env=env)
        output, _ = second.communicate(timeout=400)
        assert second.returncode == 0, output
        assert "2 trials (1 completed, 1 pruned, 0 failed)" in output, output
    finally:
        kill_ray_processes_of(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    after = _study_trials(storage, "prune")
    assert len(after) == 2 and after[good].state == TrialState.COMPLETE
    [frozen] = [t for trial_id, t in after.items() if trial_id != good]
    assert frozen.state == TrialState.PRUNED and frozen.params["weights_lr"] == pytest.approx(1e-7)
    assert frozen.user_attrs[PRUNER_HISTORY] == 1  # the good trial, finished before the kill
    # Each epoch of the good trial once: 1 unit x (1 search + 6 evaluation epochs), steps 1..7.
    assert sorted(after[good].intermediate_values) == list(range(1, 8))
    assert after[good].intermediate_values == before[good].intermediate_values
