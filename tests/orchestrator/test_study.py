"""The experiment's Optuna studies on disk, one per outer fold: what the searcher asks there, what
the scheduler records there, and how a searcher and a scheduler rebuilt by ``sernas search
--resume`` (Tune unpickles both from the start and restores the searcher's saved state) go on
deciding with them.

Trials are made as Tune makes them: ``OuterFoldSearcher.suggest`` asks the next outer fold's study
and gives the config; a Tune trial is a namespace with that config, driven through the real
``OptunaPruningScheduler`` with the results a search trial reports."""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from statistics import mean
from types import SimpleNamespace

import optuna
import pyarrow.fs as pafs
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from orchestrator.nested import OuterFoldSearcher
from orchestrator.pruning import FOLD_REPORT, PRUNE_STEP, PRUNER_HISTORY, OptunaPruningScheduler, make_pruner
from orchestrator.selection import EPOCH_OBJECTIVE, FOLD_OBJECTIVE, FOLD_TEST_UA, MEAN_TEST_UA, OBJECTIVE
from orchestrator.storage import STUDY_CACHE_ENV, StorageLocation, resolve_storage
from orchestrator.study import (
    OUTER_FOLD_KEY,
    PRUNED_REASON,
    TUNE_TRIAL_ID,
    StudyHandle,
    find_trial,
    journal_storage,
    recorded_end,
    study_name,
)

GOOD = [0.60, 0.62, 0.58, 0.65, 0.61]
BAD = [0.30, 0.31, 0.29, 0.33, 0.32]
SPACE = {"weights_lr": FloatDistribution(0.01, 0.1, log=True), "init_channels": CategoricalDistribution([4, 8])}
FIXED = {"layers": 3, "nodes": 2}  # the space's fixed entries, in every config


def make_searcher(
    handle: StudyHandle, *, folds=(1,), per_fold: int = 20, sampler: str = "random", seed: int | None = 0
) -> OuterFoldSearcher:
    return OuterFoldSearcher(
        study=handle,
        folds=folds,
        trials_per_fold=per_fold,
        distributions=SPACE,
        fixed=FIXED,
        sampler=sampler,
        seed=seed,
    )


def tune_trial(trial_id: str, config: dict, *, status: str = Trial.RUNNING, last_result: dict | None = None):
    return SimpleNamespace(trial_id=trial_id, config=dict(config), status=status, last_result=dict(last_result or {}))


def new_trial(searcher: OuterFoldSearcher, trial_id: str, **params):
    """Tune's next trial: its config from the searcher (which asks the next outer fold's study); with
    ``params``, those are enqueued in that study first, so that the ask hands them out."""
    if params:
        searcher.study(searcher.folds[searcher.assigned % len(searcher.folds)]).enqueue_trial(params)
    config = searcher.suggest(trial_id)
    assert isinstance(config, dict), config
    return tune_trial(trial_id, config)


def fold_results(
    trial, uas: list[float], *, n_folds: int | None = None, test_shift: float = 0.1, inner: bool = True
) -> list[dict]:
    """A search trial's inner-fold summaries: each inner fold's validation UA (what a pruner
    compares), the running mean (the objective once every inner fold is done), test UA beside.
    Without ``inner`` folds a trial's one unit is its outer fold (no ``inner_fold`` key)."""
    n_folds = len(uas) if n_folds is None else n_folds
    return [
        {
            "report": FOLD_REPORT,
            "fold": trial.config[OUTER_FOLD_KEY],
            **({"inner_fold": unit} if inner else {}),
            "unit": unit,
            "folds_done": unit,
            "n_folds": n_folds,
            FOLD_OBJECTIVE: ua,
            OBJECTIVE: mean(uas[:unit]),
            FOLD_TEST_UA: ua - test_shift,
            MEAN_TEST_UA: mean(uas[:unit]) - test_shift,
        }
        for unit, ua in enumerate(uas, start=1)
    ]


def epoch_result(step: int, ua: float, *, unit: int = 1, n_folds: int = 5) -> dict:
    """An epoch report at ``step`` of the trial's fixed (inner fold, phase, epoch) schedule."""
    return {
        "report": "epoch",
        "inner_fold": unit,
        "unit": unit,
        "folds_done": unit - 1,
        "n_folds": n_folds,
        PRUNE_STEP: step,
        EPOCH_OBJECTIVE: ua,
    }


def wilcoxon_scheduler(handle: StudyHandle) -> OptunaPruningScheduler:
    return OptunaPruningScheduler(
        pruner=make_pruner("wilcoxon", p_threshold=0.1)[0], over="folds", study=handle, distributions=SPACE
    )


def finish_trial(scheduler: OptunaPruningScheduler, trial, uas: list[float]) -> list[str]:
    """Run ``trial`` through every inner fold and end it as Tune does (with its last result)."""
    scheduler.on_trial_add(None, trial)
    results = fold_results(trial, uas)
    decisions = [scheduler.on_trial_result(None, trial, result) for result in results]
    scheduler.on_trial_complete(None, trial, results[-1])
    return decisions


def run_good_trial(scheduler: OptunaPruningScheduler, searcher: OuterFoldSearcher, trial_id: str = "good"):
    good = new_trial(searcher, trial_id, weights_lr=0.05, init_channels=8)
    assert finish_trial(scheduler, good, GOOD) == [TrialScheduler.CONTINUE] * len(GOOD)
    return good


def run_bad_trial(scheduler: OptunaPruningScheduler, searcher: OuterFoldSearcher, trial_id: str = "bad"):
    """A trial worse on every inner fold, reporting 4 of its 5: (trial, its results, the decisions)."""
    bad = new_trial(searcher, trial_id, weights_lr=0.011, init_channels=4)
    scheduler.on_trial_add(None, bad)
    results = fold_results(bad, BAD[:4], n_folds=len(BAD))
    return bad, results, [scheduler.on_trial_result(None, bad, result) for result in results]


def bad_trial_decisions(scheduler: OptunaPruningScheduler, searcher: OuterFoldSearcher) -> list[str]:
    return run_bad_trial(scheduler, searcher)[2]


def load_fold_study(handle: StudyHandle, fold: int) -> optuna.Study:
    """Outer fold ``fold``'s study as Optuna itself reads it."""
    return optuna.load_study(study_name=study_name(handle.experiment, fold), storage=journal_storage(handle.journal))


def test_a_scheduler_rebuilt_for_resume_prunes_with_the_trials_finished_before(tmp_path: Path):
    """Tune pickles the searcher and the scheduler when the experiment starts and, on --resume,
    rebuilds both from that pickle (and restores the searcher's saved count). Neither pickle holds a
    study: the rebuilt scheduler reopens outer fold 1's study in the journal and prunes the bad
    trial at inner fold 4 against the good trial finished before the kill."""
    handle = StudyHandle(storage=str(tmp_path / "runs"), experiment="exp")
    searcher, scheduler = make_searcher(handle), wilcoxon_scheduler(handle)
    at_start = pickle.dumps((searcher, scheduler))  # tuner.pkl
    run_good_trial(scheduler, searcher)
    searcher.save(str(tmp_path / "searcher-state.pkl"))
    del searcher, scheduler  # the driver is killed

    searcher, rebuilt = pickle.loads(at_start)
    searcher.restore(str(tmp_path / "searcher-state.pkl"))
    assert bad_trial_decisions(rebuilt, searcher) == [TrialScheduler.CONTINUE] * 3 + [TrialScheduler.STOP]
    assert "at inner fold 4" in rebuilt.pruned["bad"].reason
    assert "against 1 complete trial(s) of outer fold 1" in rebuilt.pruned["bad"].reason


def test_the_journal_holds_parameters_reports_test_ua_and_states(tmp_path: Path):
    handle = StudyHandle(storage=str(tmp_path / "runs"), experiment="exp")
    searcher, scheduler = make_searcher(handle), wilcoxon_scheduler(handle)
    good = run_good_trial(scheduler, searcher)
    assert bad_trial_decisions(scheduler, searcher)[-1] == TrialScheduler.STOP
    failed = new_trial(searcher, "failed", weights_lr=0.02, init_channels=4)
    scheduler.on_trial_add(None, failed)
    scheduler.on_trial_result(None, failed, fold_results(failed, [0.5], n_folds=5)[0])
    scheduler.on_trial_error(None, failed)
    running = new_trial(searcher, "running", weights_lr=0.03, init_channels=8)
    scheduler.on_trial_add(None, running)

    assert good.config == {**FIXED, "weights_lr": 0.05, "init_channels": 8, OUTER_FOLD_KEY: 1}
    assert handle.journal == tmp_path / "runs" / "exp" / "optuna.journal"
    study = load_fold_study(handle, 1)  # Optuna's own view: study "exp.fold1"
    trials = {t.user_attrs[TUNE_TRIAL_ID]: t for t in study.trials}
    assert {name: t.state for name, t in trials.items()} == {
        "good": TrialState.COMPLETE,
        "bad": TrialState.PRUNED,
        "failed": TrialState.FAIL,
        "running": TrialState.RUNNING,
    }
    good = trials["good"]
    assert good.params == {"weights_lr": 0.05, "init_channels": 8} and good.distributions == SPACE
    assert good.intermediate_values == dict(enumerate(GOOD, start=1))  # validation UA per inner fold
    assert good.value == pytest.approx(mean(GOOD))
    assert good.user_attrs["fold3_test_ua"] == pytest.approx(GOOD[2] - 0.1)  # test UA: attributes only
    assert good.user_attrs["fold3_valid_ua"] == pytest.approx(GOOD[2])
    assert good.user_attrs[MEAN_TEST_UA] == pytest.approx(mean(GOOD) - 0.1)
    assert trials["bad"].intermediate_values == dict(enumerate(BAD[:4], start=1))
    assert trials["bad"].user_attrs[PRUNER_HISTORY] == 1
    assert handle.trials() == 4 and list(handle.studies()) == [1]


def test_a_replayed_report_is_recorded_once(tmp_path: Path):
    """After a restart a trial replays the epochs since its last checkpoint, at the same steps of
    its schedule: each step keeps one value, its first."""
    handle = StudyHandle(storage=str(tmp_path / "runs"), experiment="exp")
    scheduler = OptunaPruningScheduler(pruner=optuna.pruners.NopPruner(), over="epochs", study=handle)
    a = new_trial(make_searcher(handle), "a")
    scheduler.on_trial_add(None, a)
    for step, ua in [(1, 0.3), (2, 0.4), (3, 0.5)]:
        scheduler.on_trial_result(None, a, epoch_result(step, ua))
    rebuilt = pickle.loads(pickle.dumps(scheduler))
    rebuilt.on_trial_add(None, a)  # Tune re-adds the restored trial
    for step, ua in [(2, 0.41), (3, 0.51), (4, 0.6)]:  # replayed from the checkpoint after step 1
        rebuilt.on_trial_result(None, a, epoch_result(step, ua))
    [trial] = load_fold_study(handle, 1).trials
    assert trial.intermediate_values == {1: 0.3, 2: 0.4, 3: 0.5, 4: 0.6}


@pytest.mark.parametrize(
    ("reported", "state"),
    [(len(GOOD), TrialState.COMPLETE), (2, TrialState.FAIL)],
    ids=["every inner fold", "stopped after 2 of 5 inner folds"],
)
def test_resume_finishes_a_trial_whose_end_the_killed_driver_never_recorded(tmp_path: Path, reported, state):
    handle = StudyHandle(storage=str(tmp_path / "runs"), experiment="exp")
    scheduler = wilcoxon_scheduler(handle)
    done = new_trial(make_searcher(handle), "done", weights_lr=0.05, init_channels=8)
    scheduler.on_trial_add(None, done)
    results = fold_results(done, GOOD[:reported], n_folds=len(GOOD))
    for result in results:
        scheduler.on_trial_result(None, done, result)
    # killed before on_trial_complete; Tune's state says TERMINATED with its last result
    rebuilt = pickle.loads(pickle.dumps(scheduler))
    rebuilt.on_trial_add(None, tune_trial("done", done.config, status=Trial.TERMINATED, last_result=results[-1]))
    [trial] = rebuilt.study(1).trials
    assert trial.state == state
    assert trial.value == (pytest.approx(mean(GOOD)) if state == TrialState.COMPLETE else None)


def test_an_errored_trial_run_again_by_resume_continues_in_a_retry_with_its_reports(tmp_path: Path):
    handle = StudyHandle(storage=str(tmp_path / "runs"), experiment="exp")
    scheduler = wilcoxon_scheduler(handle)
    flaky = new_trial(make_searcher(handle), "flaky", weights_lr=0.05, init_channels=8)
    results = fold_results(flaky, GOOD)
    scheduler.on_trial_add(None, flaky)
    scheduler.on_trial_result(None, flaky, results[0])
    scheduler.on_trial_error(None, flaky)
    rebuilt = pickle.loads(pickle.dumps(scheduler))  # --resume (resume_errored): PENDING again
    again = tune_trial("flaky", flaky.config, status=Trial.PENDING)
    rebuilt.on_trial_add(None, again)
    rebuilt.on_trial_result(None, again, results[1])
    first, retry = rebuilt.study(1).trials
    assert first.state == TrialState.FAIL and retry.state == TrialState.RUNNING
    assert retry.user_attrs["retry_of"] == first.number and retry.params == first.params
    assert retry.user_attrs[TUNE_TRIAL_ID] == "flaky" and find_trial(rebuilt.study(1), "flaky").number == retry.number
    assert retry.intermediate_values == {1: GOOD[0], 2: GOOD[1]}
    for result in results[2:]:
        rebuilt.on_trial_result(None, again, result)
    rebuilt.on_trial_complete(None, again, results[-1])
    assert recorded_end(handle, fold=1, tune_trial_id="flaky") == (TrialState.COMPLETE, None)
    assert rebuilt.study(1).trials[retry.number].value == pytest.approx(mean(GOOD))


def test_a_torn_last_line_is_cut_before_appending(tmp_path: Path):
    """A driver killed mid-append leaves a line without its newline; appending after it would
    glue two operations into one unreadable line."""
    handle = StudyHandle(storage=str(tmp_path / "runs"), experiment="exp")
    run_good_trial(wilcoxon_scheduler(handle), make_searcher(handle))
    with open(handle.journal, "ab") as journal:
        journal.write(b'{"op_code": 4, "worker_id": "x", "trial_id"')
    assert bad_trial_decisions(wilcoxon_scheduler(handle), make_searcher(handle))[-1] == TrialScheduler.STOP
    assert handle.journal.read_bytes().endswith(b"\n") and handle.trials() == 2


def test_on_an_object_store_the_journal_is_local_and_copied_there(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(STUDY_CACHE_ENV, str(tmp_path / "cache"))
    filesystem, _ = pafs.FileSystem.from_uri("mock:///")
    remote = StorageLocation(filesystem, "bucket/runs", "mock://bucket/runs")
    handle = StudyHandle(storage=remote, experiment="exp")
    assert handle.journal == tmp_path / "cache" / "mock" / "bucket" / "runs" / "exp" / "optuna.journal"
    run_good_trial(wilcoxon_scheduler(handle), make_searcher(handle))  # each ask and trial end uploads it
    assert remote.read_bytes("exp/optuna.journal") == handle.journal.read_bytes()

    handle.journal.unlink()  # --resume on another driver machine: fetched from the copy
    assert handle.trials() == 1
    assert bad_trial_decisions(wilcoxon_scheduler(handle), make_searcher(handle))[-1] == TrialScheduler.STOP


def test_reading_the_studies_leaves_a_torn_last_line_to_the_next_writer(tmp_path: Path):
    """``sernas dashboard`` (or a test polling a live run) reads the journal while a driver may
    be appending to it: a reader must not rewrite the file under the writer, and need not, as
    Optuna's reader skips an unfinished last line."""
    handle = StudyHandle(storage=str(tmp_path / "runs"), experiment="exp")
    run_good_trial(wilcoxon_scheduler(handle), make_searcher(handle))
    with open(handle.journal, "ab") as journal:
        journal.write(b'{"op_code": 4, "worker_id": "x", "trial_id"')  # an append under way
    before = handle.journal.read_bytes()
    assert handle.trials() == 1
    [(fold, study)] = handle.studies().items()
    assert fold == 1 and [t.state for t in study.trials] == [TrialState.COMPLETE]
    assert recorded_end(handle, fold=1, tune_trial_id="good") == (TrialState.COMPLETE, None)
    assert handle.journal.read_bytes() == before


def test_without_inner_folds_a_trials_one_unit_is_named_by_its_outer_fold(tmp_path: Path):
    """The user attributes ``fold<k>_valid_ua``/``fold<k>_test_ua`` name the inner fold, or the
    outer fold when a trial's one unit is the outer fold itself; the pruner's step is the unit."""
    handle = StudyHandle(storage=str(tmp_path / "runs"), experiment="exp")
    searcher, scheduler = make_searcher(handle, folds=(1, 2)), wilcoxon_scheduler(handle)
    first, second = new_trial(searcher, "first"), new_trial(searcher, "second")
    for trial in (first, second):
        scheduler.on_trial_add(None, trial)
        [result] = fold_results(trial, [0.6], inner=False)
        scheduler.on_trial_result(None, trial, result)
        scheduler.on_trial_complete(None, trial, result)
    for fold, name in ((1, "first"), (2, "second")):
        [trial] = handle.studies()[fold].trials
        assert trial.user_attrs[TUNE_TRIAL_ID] == name and trial.state == TrialState.COMPLETE
        assert trial.intermediate_values == {1: 0.6}
        assert trial.user_attrs[f"fold{fold}_valid_ua"] == 0.6
        assert trial.user_attrs[f"fold{fold}_test_ua"] == pytest.approx(0.5)


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
    said completed): a stop decision at the last inner fold saves nothing. It must end Complete."""
    handle = StudyHandle(storage=str(tmp_path / "runs"), experiment="exp")
    searcher, scheduler = make_searcher(handle), wilcoxon_scheduler(handle)
    run_good_trial(scheduler, searcher)
    bad = new_trial(searcher, "bad", weights_lr=0.011, init_channels=4)
    scheduler.on_trial_add(None, bad)
    results = fold_results(bad, BAD[:4])  # a trial of 4 inner folds
    decisions = [scheduler.on_trial_result(None, bad, result) for result in results]
    assert decisions == [TrialScheduler.CONTINUE] * 4  # inner fold 4 would be pruned were it not the last
    scheduler.on_trial_complete(None, bad, results[-1])
    states = {t.user_attrs[TUNE_TRIAL_ID]: t.state for t in scheduler.study(1).get_trials()}
    assert states == {"good": TrialState.COMPLETE, "bad": TrialState.COMPLETE} and "bad" not in scheduler.pruned


def test_the_searcher_hands_trials_to_outer_folds_in_turn_and_each_study_holds_only_its_own(tmp_path: Path):
    handle = StudyHandle(storage=str(tmp_path / "runs"), experiment="exp")
    searcher, scheduler = make_searcher(handle, folds=(1, 2, 3), per_fold=2), wilcoxon_scheduler(handle)
    assert searcher.total == 6
    trials = [new_trial(searcher, f"t{n}") for n in range(6)]
    assert [t.config[OUTER_FOLD_KEY] for t in trials] == [1, 2, 3, 1, 2, 3]
    assert searcher.suggest("t6") == Searcher.FINISHED  # num_samples per outer fold, no more
    for trial in trials:
        assert trial.config.keys() == {*FIXED, *SPACE, OUTER_FOLD_KEY} and FIXED.items() <= trial.config.items()
    finish_trial(scheduler, trials[1], GOOD)  # reported and ended in fold 2's study, nowhere else

    studies = handle.studies()
    assert list(studies) == [1, 2, 3] and handle.trials() == 6
    for fold, study in studies.items():
        assert study.study_name == f"exp.fold{fold}" == study_name("exp", fold)
        held = {t.user_attrs[TUNE_TRIAL_ID]: t for t in study.trials}
        assert sorted(held) == [t.trial_id for t in trials if t.config[OUTER_FOLD_KEY] == fold]
        for trial in trials:
            if trial.trial_id in held:
                assert held[trial.trial_id].params == {name: trial.config[name] for name in SPACE}
        states = {tid: t.state for tid, t in held.items()}
        assert states == {tid: TrialState.COMPLETE if tid == "t1" else TrialState.RUNNING for tid in held}


def _score(config: dict) -> float:
    """A smooth objective with its best at weights_lr 0.03 and 8 channels."""
    return 0.7 - (math.log10(config["weights_lr"]) - math.log10(0.03)) ** 2 - 0.05 * (config["init_channels"] == 4)


def _proposals(storage: Path, fold2_value) -> dict[int, list[dict]]:
    """Each outer fold's proposals (TPE, seed 0) when fold 1's trials score ``_score`` and fold
    2's trials score ``fold2_value``: 13 trials each, the last 3 proposed by TPE's model (after its
    10 startup trials)."""
    handle = StudyHandle(storage=str(storage), experiment="exp")
    searcher = make_searcher(handle, folds=(1, 2), per_fold=13, sampler="optuna-tpe", seed=0)
    scheduler = OptunaPruningScheduler(pruner=optuna.pruners.NopPruner(), over="folds", study=handle)
    proposals: dict[int, list[dict]] = {1: [], 2: []}
    for n in range(searcher.total):
        trial = new_trial(searcher, f"t{n}")
        fold = trial.config[OUTER_FOLD_KEY]
        proposals[fold].append({name: trial.config[name] for name in SPACE})
        finish_trial(scheduler, trial, [_score(trial.config) if fold == 1 else fold2_value(trial.config)])
    assert searcher.suggest("last") == Searcher.FINISHED
    return proposals


def test_a_studys_sampler_proposes_from_its_own_outer_folds_trials_only(tmp_path: Path):
    """Fold 2's study told the same scores as fold 1's, or the reverse: fold 1's TPE proposes the
    same parameters either way (its model-based proposals too), while fold 2's own proposals
    follow what fold 2 was told (so a leak between studies would show)."""
    alike = _proposals(tmp_path / "alike", _score)
    reverse = _proposals(tmp_path / "reverse", lambda config: 1.0 - _score(config))
    assert alike[1] == reverse[1]
    assert alike[2][:10] == reverse[2][:10]  # TPE's seeded startup trials do not depend on values
    assert alike[2][10:] != reverse[2][10:]


def test_pruned_is_pruned_an_early_end_fails_and_complete_is_the_mean_over_inner_folds(tmp_path: Path):
    handle = StudyHandle(storage=str(tmp_path / "runs"), experiment="exp")
    searcher, scheduler = make_searcher(handle), wilcoxon_scheduler(handle)
    run_good_trial(scheduler, searcher)
    bad, results, decisions = run_bad_trial(scheduler, searcher)
    assert decisions[-1] == TrialScheduler.STOP
    scheduler.on_trial_complete(None, bad, results[-1])  # Tune ends a stopped trial with its last result
    short = new_trial(searcher, "short")  # ends after 2 of its 5 inner folds, with no pruning decision
    scheduler.on_trial_add(None, short)
    results = fold_results(short, GOOD[:2], n_folds=len(GOOD))
    assert [scheduler.on_trial_result(None, short, result) for result in results] == [TrialScheduler.CONTINUE] * 2
    scheduler.on_trial_complete(None, short, results[-1])
    crashed = new_trial(searcher, "crashed")  # every inner fold done, then an error
    scheduler.on_trial_add(None, crashed)
    for result in fold_results(crashed, GOOD):
        scheduler.on_trial_result(None, crashed, result)
    crashed.last_result = fold_results(crashed, GOOD)[-1]
    scheduler.on_trial_error(None, crashed)

    trials = {t.user_attrs[TUNE_TRIAL_ID]: t for t in load_fold_study(handle, 1).trials}
    assert {name: t.state for name, t in trials.items()} == {
        "good": TrialState.COMPLETE,
        "bad": TrialState.PRUNED,
        "short": TrialState.FAIL,
        "crashed": TrialState.FAIL,
    }
    assert (
        trials["good"].value
        == pytest.approx(mean(GOOD))
        == pytest.approx(mean(trials["good"].intermediate_values.values()))
    )
    assert trials["short"].value is None  # never a partial mean
    # Optuna's rule for a pruned trial: its value is the last step's (inner fold 4's validation
    # UA), not a mean; only COMPLETE trials count as the objective (best_trial, the estimate).
    assert trials["bad"].value == pytest.approx(BAD[3]) and load_fold_study(handle, 1).best_trial.number == 0
    reason = trials["bad"].user_attrs[PRUNED_REASON]
    assert reason == scheduler.pruned["bad"].reason and "WilcoxonPruner at inner fold 4" in reason
    assert recorded_end(handle, fold=1, tune_trial_id="bad") == (TrialState.PRUNED, reason)
    assert recorded_end(handle, fold=1, tune_trial_id="short") == (TrialState.FAIL, None)
    assert recorded_end(handle, fold=2, tune_trial_id="bad") is None
    assert scheduler.state_of(bad) == TrialState.PRUNED


def test_a_restored_searcher_continues_the_round_robin_where_it_was(tmp_path: Path):
    handle = StudyHandle(storage=str(tmp_path / "runs"), experiment="exp")
    searcher = make_searcher(handle, folds=(1, 2, 3), per_fold=2)
    at_start = pickle.dumps(searcher)  # tuner.pkl: nothing handed out yet
    assert [searcher.suggest(f"t{n}")[OUTER_FOLD_KEY] for n in range(4)] == [1, 2, 3, 1]
    searcher.save(str(tmp_path / "searcher-state.pkl"))  # Tune's searcher state at the kill

    restored = pickle.loads(at_start)
    restored.restore(str(tmp_path / "searcher-state.pkl"))
    assert [restored.suggest(f"t{n}")[OUTER_FOLD_KEY] for n in range(4, 6)] == [2, 3]
    assert restored.suggest("t6") == Searcher.FINISHED
    assert {fold: len(study.trials) for fold, study in handle.studies().items()} == {1: 2, 2: 2, 3: 2}


def test_a_resumed_searcher_proposes_new_parameters_not_the_first_ones_again(tmp_path: Path):
    """A sampler rebuilt with the same seed would replay its random stream: the resumed driver's
    first trial of a fold would repeat that fold's first trial (seen with TPE's startup trials)."""
    handle = StudyHandle(storage=str(tmp_path / "runs"), experiment="exp")
    searcher = make_searcher(handle, folds=(1,), per_fold=4, sampler="optuna-tpe")
    at_start = pickle.dumps(searcher)
    first = [searcher.suggest(f"t{n}")["weights_lr"] for n in range(2)]
    searcher.save(str(tmp_path / "searcher-state.pkl"))
    restored = pickle.loads(at_start)
    restored.restore(str(tmp_path / "searcher-state.pkl"))
    later = [restored.suggest(f"t{n}")["weights_lr"] for n in range(2, 4)]
    assert not set(later) & set(first)
    again = make_searcher(StudyHandle(storage=str(tmp_path / "again"), experiment="exp"), folds=(1,), per_fold=4)
    again.sampler = "optuna-tpe"
    assert [again.suggest(f"t{n}")["weights_lr"] for n in range(2)] == first  # a fresh run repeats: seeded


def test_a_trial_asked_after_tunes_last_save_is_handed_out_again_not_left_running(tmp_path: Path):
    """The driver is killed after the searcher asked a study for a trial but before Tune saved that
    trial (and the searcher's count): on --resume Tune asks for it again, and the searcher hands out
    the same Optuna trial, so the study holds no trial that stays RUNNING forever."""
    handle = StudyHandle(storage=str(tmp_path / "runs"), experiment="exp")
    searcher = make_searcher(handle, folds=(1, 2), per_fold=2)
    at_start = pickle.dumps(searcher)
    searcher.suggest("a")
    searcher.suggest("b")
    searcher.save(str(tmp_path / "searcher-state.pkl"))  # Tune's last save: two trials
    orphan = searcher.suggest("c")  # asked, then the driver dies before Tune saves it

    restored = pickle.loads(at_start)
    restored.restore(str(tmp_path / "searcher-state.pkl"))
    again = restored.suggest("c2")
    assert again == orphan  # the same parameters and outer fold
    trials = handle.studies()[1].trials
    assert len(trials) == 2 and trials[-1].user_attrs[TUNE_TRIAL_ID] == "c2"
    restored.suggest("d")
    assert sum(len(study.trials) for study in handle.studies().values()) == 4
