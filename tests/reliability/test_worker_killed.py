"""SIGKILL the Ray worker running a trial in the middle of one of its inner folds: Tune restarts the
trial from its last checkpoint, which continues that inner fold at the next epoch, and the
leaderboard ends with exactly one completed row per (trial, inner fold)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

import orchestrator.progress
from conftest import write_experiment_config
from orchestrator.cli import main
from orchestrator.leaderboard import connect

pytestmark = pytest.mark.slow

KILL_FOLD, KILL_EPOCH = 2, 1  # the trial's last inner fold, after its first evaluation epoch (of EVAL_EPOCHS)
EVAL_EPOCHS = 3
# Every epoch/fold result the driver received, in order; the kill is recorded as an event too.
# (Module level: Tune pickles its callbacks, so their attributes would be copies.)
EVENTS: list[dict] = []


class KillingProgress(orchestrator.progress.ExperimentProgress):
    """The experiment's own progress callback, plus: SIGKILL the trial's worker (Tune reports its pid
    with every result) once the driver has stored the checkpoint of the chosen epoch of the chosen
    fold. The worker then waits inside that report (a function trainable goes on only when the
    driver asks for its next result): in the middle of the fold, with its checkpoint safe."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        super().on_trial_result(iteration, trials, trial, result, **info)
        EVENTS.append(
            {
                "trial_id": trial.trial_id,
                "pid": result["pid"],
                "report": result.get("report"),
                "fold": result.get("inner_fold"),
                "phase": result.get("phase"),
                "epoch": result.get("epoch"),
            }
        )

    def on_trial_save(self, iteration, trials, trial, **info):
        result = trial.last_result
        if (result.get("report"), result.get("inner_fold"), result.get("phase"), result.get("epoch")) == (
            "epoch",
            KILL_FOLD,
            "eval",
            KILL_EPOCH,
        ) and not any(e["report"] == "killed" for e in EVENTS):
            os.kill(result["pid"], signal.SIGKILL)
            EVENTS.append({"trial_id": trial.trial_id, "pid": result["pid"], "report": "killed"})

    def on_trial_recover(self, iteration, trials, trial, **info):
        EVENTS.append({"trial_id": trial.trial_id, "report": "recovered"})


def _pid_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie is dead too
    except FileNotFoundError:
        return False


def test_a_killed_worker_resumes_its_fold_from_the_checkpoint(local_ray, tmp_path, capsys, monkeypatch):
    EVENTS.clear()
    monkeypatch.setattr(orchestrator.progress, "ExperimentProgress", KillingProgress)
    config = write_experiment_config(
        tmp_path / "killed.yaml",
        name="killed",
        samples=1,
        concurrent=1,
        searcher="random",
        eval_epochs=EVAL_EPOCHS,
        folds="{scheme: loso, use: [1], inner: 2}",  # one trial of two networks (inner folds)
        extra="  max_failures: 2",
    )
    assert main(["search", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "1 trials (1 completed, 0 pruned, 0 failed)" in out, out

    kills = [e for e in EVENTS if e["report"] == "killed"]
    assert len(kills) == 1, EVENTS
    killed_pid, trial_id = kills[0]["pid"], kills[0]["trial_id"]
    assert not _pid_alive(killed_pid)
    assert [e["report"] for e in EVENTS].count("recovered") == 1  # Tune saw the crash and restarted the trial

    # The restarted worker (a new process) continued the fold at the epoch after its checkpoint:
    # no search epoch and no evaluation epoch of that fold again, and fold 1 was not redone.
    after = EVENTS[EVENTS.index(kills[0]) + 1 :]
    resumed = [e for e in after if e.get("pid") not in (None, killed_pid)]
    assert resumed and all(e["trial_id"] == trial_id for e in resumed)
    epochs = [(e["phase"], e["epoch"]) for e in resumed if e["report"] == "epoch"]
    assert epochs == [("eval", epoch) for epoch in range(KILL_EPOCH + 1, EVAL_EPOCHS + 1)], EVENTS
    assert [e["fold"] for e in resumed if e["report"] == "fold"] == [KILL_FOLD]
    before = EVENTS[: EVENTS.index(kills[0])]
    assert {e["pid"] for e in before} == {killed_pid}
    assert [e["fold"] for e in before if e["report"] == "fold"] == [1]

    # Exactly one completed row per (trial, fold) in the raw part files, the killed fold's written
    # by the second attempt and the fold finished before the kill by the first.
    with connect(tmp_path / "runs", experiment="killed") as board:
        rows = board.sql("SELECT trial_id, inner_fold AS fold, attempt, status FROM fold_rows ORDER BY inner_fold")
        trials = board.sql("SELECT trial_id, status FROM trials")
        assert board.damaged == () and board.scan.temporary == ()
    assert rows.to_dict("records") == [
        {"trial_id": trial_id, "fold": 1, "attempt": 1, "status": "completed"},
        {"trial_id": trial_id, "fold": KILL_FOLD, "attempt": 2, "status": "completed"},
    ]
    assert trials.to_dict("records") == [{"trial_id": trial_id, "status": "completed"}]

    # The trial's last checkpoint records both folds as done, by its second attempt.
    states = sorted((tmp_path / "runs" / "killed").glob(f"*{trial_id}*/checkpoint_*/state.json"))
    assert states, "no trial checkpoint in the storage"
    last = json.loads(states[-1].read_text())
    assert last["attempt"] == 2 and sorted(last["done"]) == ["1.1", f"1.{KILL_FOLD}"]
