"""The experiment's Optuna study on disk: what the scheduler records there, and how a scheduler
rebuilt by ``sernas search --resume`` (unpickled from the start, as Tune does) decides with it."""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace

import optuna
import pyarrow.fs as pafs
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from orchestrator.pruning import FOLD_REPORT, PRUNER_HISTORY, TUNE_TRIAL_ID, OptunaPruningScheduler, make_pruner
from orchestrator.selection import FOLD_OBJECTIVE, FOLD_TEST_UA, MEAN_TEST_UA, OBJECTIVE
from orchestrator.storage import STUDY_CACHE_ENV, StorageLocation, resolve_storage
from orchestrator.study import StudyHandle, journal_storage

GOOD = [0.60, 0.62, 0.58, 0.65, 0.61]
BAD = [0.30, 0.31, 0.29, 0.33, 0.32]
SPACE = {"weights_lr": FloatDistribution(0.01, 0.1, log=True), "init_channels": CategoricalDistribution([4, 8])}


def tune_trial(trial_id: str, *, status: str = Trial.RUNNING, last_result: dict | None = None, **config):
    return SimpleNamespace(trial_id=trial_id, config=config, status=status, last_result=last_result or {})


def fold_result(fold: int, ua: float, *, test_ua: float = 0.5) -> dict:
    return {"report": FOLD_REPORT, "fold": fold, FOLD_OBJECTIVE: ua, OBJECTIVE: ua, FOLD_TEST_UA: test_ua}


def wilcoxon_scheduler(handle: StudyHandle | None) -> OptunaPruningScheduler:
    return OptunaPruningScheduler(
        pruner=make_pruner("wilcoxon", p_threshold=0.1)[0], over="folds", study=handle, distributions=SPACE
    )


def run_good_trial(scheduler: OptunaPruningScheduler, trial_id: str = "good") -> None:
    good = tune_trial(trial_id, weights_lr=0.05, init_channels=8)
    scheduler.on_trial_add(None, good)
    for fold, ua in enumerate(GOOD, start=1):
        assert scheduler.on_trial_result(None, good, fold_result(fold, ua, test_ua=ua - 0.1)) == "CONTINUE"
    scheduler.on_trial_complete(None, good, {OBJECTIVE: sum(GOOD) / 5, MEAN_TEST_UA: sum(GOOD) / 5 - 0.1})


def bad_trial_decisions(scheduler: OptunaPruningScheduler) -> list[str]:
    bad = tune_trial("bad", weights_lr=0.011, init_channels=4)
    scheduler.on_trial_add(None, bad)
    return [scheduler.on_trial_result(None, bad, fold_result(f, ua)) for f, ua in enumerate(BAD[:4], start=1)]


@pytest.mark.parametrize("on_disk", [False, True], ids=["in-memory study (the defect)", "journal study"])
def test_a_scheduler_rebuilt_for_resume_prunes_with_the_trials_finished_before(tmp_path: Path, on_disk: bool):
    """Tune pickles the scheduler when the experiment starts and, on --resume, rebuilds it from
    that pickle. With the in-memory study the rebuilt scheduler has no history, so Wilcoxon
    cannot prune; with the journal it reopens the study and prunes the bad trial at fold 4."""
    handle = StudyHandle(storage=str(tmp_path / "runs"), experiment="exp") if on_disk else None
    scheduler = wilcoxon_scheduler(handle)
    at_start = pickle.dumps(scheduler)  # tuner.pkl
    run_good_trial(scheduler)
    del scheduler  # the driver is killed

    rebuilt = pickle.loads(at_start)
    decisions = bad_trial_decisions(rebuilt)
    if on_disk:
        assert decisions == [TrialScheduler.CONTINUE] * 3 + [TrialScheduler.STOP]
        assert "against 1 complete trial(s)" in rebuilt.pruned["bad"].reason
    else:
        assert decisions == [TrialScheduler.CONTINUE] * 4  # the defect: the finished trial no longer counts


def test_the_journal_holds_parameters_reports_test_ua_and_states(tmp_path: Path):
    handle = StudyHandle(storage=str(tmp_path / "runs"), experiment="exp")
    scheduler = wilcoxon_scheduler(handle)
    run_good_trial(scheduler)
    assert bad_trial_decisions(scheduler)[-1] == TrialScheduler.STOP
    failed = tune_trial("failed", weights_lr=0.02, init_channels=4)
    scheduler.on_trial_add(None, failed)
    scheduler.on_trial_result(None, failed, fold_result(1, 0.5))
    scheduler.on_trial_error(None, failed)
    running = tune_trial("running", weights_lr=0.03, init_channels=8)
    scheduler.on_trial_add(None, running)

    assert handle.journal == tmp_path / "runs" / "exp" / "optuna.journal"
    study = optuna.load_study(study_name="exp", storage=journal_storage(handle.journal))  # Optuna's own view
    trials = {t.user_attrs[TUNE_TRIAL_ID]: t for t in study.trials}
    assert {name: t.state for name, t in trials.items()} == {
        "good": TrialState.COMPLETE,
        "bad": TrialState.PRUNED,
        "failed": TrialState.FAIL,
        "running": TrialState.RUNNING,
    }
    good = trials["good"]
    assert good.params == {"weights_lr": 0.05, "init_channels": 8} and good.distributions == SPACE
    assert good.intermediate_values == dict(enumerate(GOOD, start=1))  # validation UA per fold
    assert good.value == pytest.approx(sum(GOOD) / 5)
    assert good.user_attrs["fold3_test_ua"] == pytest.approx(GOOD[2] - 0.1)  # test UA: attributes only
    assert good.user_attrs["fold3_valid_ua"] == pytest.approx(GOOD[2])
    assert good.user_attrs[MEAN_TEST_UA] == pytest.approx(sum(GOOD) / 5 - 0.1)
    assert trials["bad"].intermediate_values == dict(enumerate(BAD[:4], start=1))
    assert trials["bad"].user_attrs[PRUNER_HISTORY] == 1
    assert handle.trials() == 4


def test_a_replayed_report_is_recorded_once(tmp_path: Path):
    """After a restart a trial replays the epochs since its last checkpoint, with the same
    training_iteration: each step keeps one value, its first."""
    handle = StudyHandle(storage=str(tmp_path / "runs"), experiment="exp")
    scheduler = OptunaPruningScheduler(pruner=optuna.pruners.NopPruner(), over="epochs", study=handle)
    a = tune_trial("a")
    scheduler.on_trial_add(None, a)
    for iteration, ua in [(1, 0.3), (2, 0.4), (3, 0.5)]:
        scheduler.on_trial_result(None, a, {"report": "epoch", "valid_ua": ua, "training_iteration": iteration})
    rebuilt = pickle.loads(pickle.dumps(scheduler))
    rebuilt.on_trial_add(None, a)  # Tune re-adds the restored trial
    for iteration, ua in [(2, 0.41), (3, 0.51), (4, 0.6)]:  # replayed from the checkpoint after epoch 1
        rebuilt.on_trial_result(None, a, {"report": "epoch", "valid_ua": ua, "training_iteration": iteration})
    [trial] = optuna.load_study(study_name="exp", storage=journal_storage(handle.journal)).trials
    assert trial.intermediate_values == {1: 0.3, 2: 0.4, 3: 0.5, 4: 0.6}


def test_resume_finishes_a_trial_whose_end_the_killed_driver_never_recorded(tmp_path: Path):
    handle = StudyHandle(storage=str(tmp_path / "runs"), experiment="exp")
    scheduler = wilcoxon_scheduler(handle)
    done = tune_trial("done", weights_lr=0.05, init_channels=8)
    scheduler.on_trial_add(None, done)
    scheduler.on_trial_result(None, done, fold_result(1, 0.6))
    # killed before on_trial_complete; Tune's state says TERMINATED with its last result
    rebuilt = pickle.loads(pickle.dumps(scheduler))
    rebuilt.on_trial_add(None, tune_trial("done", status=Trial.TERMINATED, last_result={OBJECTIVE: 0.6}))
    [trial] = rebuilt.study.trials
    assert trial.state == TrialState.COMPLETE and trial.value == pytest.approx(0.6)


def test_an_errored_trial_run_again_by_resume_continues_in_a_retry_with_its_reports(tmp_path: Path):
    handle = StudyHandle(storage=str(tmp_path / "runs"), experiment="exp")
    scheduler = wilcoxon_scheduler(handle)
    flaky = tune_trial("flaky", weights_lr=0.05, init_channels=8)
    scheduler.on_trial_add(None, flaky)
    scheduler.on_trial_result(None, flaky, fold_result(1, 0.6))
    scheduler.on_trial_error(None, flaky)
    rebuilt = pickle.loads(pickle.dumps(scheduler))  # --resume (resume_errored): PENDING again
    again = tune_trial("flaky", status=Trial.PENDING, weights_lr=0.05, init_channels=8)
    rebuilt.on_trial_add(None, again)
    rebuilt.on_trial_result(None, again, fold_result(2, 0.62))
    first, retry = rebuilt.study.trials
    assert first.state == TrialState.FAIL and retry.state == TrialState.RUNNING
    assert retry.user_attrs["retry_of"] == first.number and retry.params == first.params
    assert retry.intermediate_values == {1: 0.6, 2: 0.62}


def test_a_torn_last_line_is_cut_before_appending(tmp_path: Path):
    """A driver killed mid-append leaves a line without its newline; appending after it would
    glue two operations into one unreadable line."""
    handle = StudyHandle(storage=str(tmp_path / "runs"), experiment="exp")
    run_good_trial(wilcoxon_scheduler(handle))
    with open(handle.journal, "ab") as journal:
        journal.write(b'{"op_code": 4, "worker_id": "x", "trial_id"')
    rebuilt = wilcoxon_scheduler(handle)
    assert bad_trial_decisions(rebuilt)[-1] == TrialScheduler.STOP
    assert handle.journal.read_bytes().endswith(b"\n") and handle.trials() == 2


def test_on_an_object_store_the_journal_is_local_and_copied_there(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(STUDY_CACHE_ENV, str(tmp_path / "cache"))
    filesystem, _ = pafs.FileSystem.from_uri("mock:///")
    remote = StorageLocation(filesystem, "bucket/runs", "mock://bucket/runs")
    handle = StudyHandle(storage=remote, experiment="exp")
    assert handle.journal == tmp_path / "cache" / "mock" / "bucket" / "runs" / "exp" / "optuna.journal"
    run_good_trial(wilcoxon_scheduler(handle))  # each trial end uploads the journal
    assert remote.read_bytes("exp/optuna.journal") == handle.journal.read_bytes()

    handle.journal.unlink()  # --resume on another driver machine: fetched from the copy
    assert handle.trials() == 1
    assert bad_trial_decisions(wilcoxon_scheduler(handle))[-1] == TrialScheduler.STOP


def test_the_study_journal_location_is_owned_by_the_storage_location(tmp_path: Path, monkeypatch):
    assert resolve_storage(tmp_path).study_journal("demo") == tmp_path / "demo" / "optuna.journal"
    monkeypatch.delenv(STUDY_CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    remote = StorageLocation(pafs.LocalFileSystem(), "b/p/../q", "s3://b/p/../q")
    remote = StorageLocation(pafs.FileSystem.from_uri("mock:///")[0], remote.root, remote.display)
    expected = tmp_path / "home" / ".cache" / "sernas" / "studies" / "s3" / "b" / "p" / "q" / "demo" / "optuna.journal"
    assert remote.study_journal("demo") == expected  # no way out of the cache through ".."


def test_a_trial_is_never_pruned_after_its_last_fold(tmp_path: Path):
    """The demo's study showed a trial that ran every fold marked Pruned (Tune and the leaderboard
    said completed): a stop decision at the last fold saves nothing. It must end Complete."""
    scheduler = wilcoxon_scheduler(StudyHandle(storage=str(tmp_path / "runs"), experiment="exp"))
    run_good_trial(scheduler)
    bad = tune_trial("bad", weights_lr=0.011, init_channels=4)
    scheduler.on_trial_add(None, bad)
    decisions = [
        scheduler.on_trial_result(None, bad, {**fold_result(f, ua), "folds_done": f, "n_folds": 4})
        for f, ua in enumerate(BAD[:4], start=1)
    ]
    assert decisions == [TrialScheduler.CONTINUE] * 4  # fold 4 would be pruned were it not the last
    scheduler.on_trial_complete(None, bad, {OBJECTIVE: sum(BAD[:4]) / 4})
    states = {t.user_attrs.get("tune_trial_id", t.number): t.state for t in scheduler.study.get_trials()}
    assert TrialState.PRUNED not in states.values() and "bad" not in scheduler.pruned
