"""The Optuna pruning bridge decides with real Optuna pruners on Tune-shaped results, each trial
in the study of its outer fold (made by the real ``OuterFoldSearcher``, as Tune makes them)."""

from pathlib import Path

import optuna
import pytest
from ray.tune.schedulers import TrialScheduler
from test_study import BAD, GOOD, epoch_result, fold_results, make_searcher, new_trial

from orchestrator.config import PRUNER_KINDS, PrunerConfig
from orchestrator.pruning import FINAL_STEP, OptunaPruningScheduler, make_pruner
from orchestrator.selection import FOLD_TEST_UA, MEAN_TEST_UA
from orchestrator.study import StudyHandle


def handle(tmp_path: Path, name: str = "runs") -> StudyHandle:
    return StudyHandle(storage=str(tmp_path / name), experiment="exp")


def test_wilcoxon_stops_a_trial_clearly_worse_than_the_best_across_folds(tmp_path: Path):
    study = handle(tmp_path)
    searcher = make_searcher(study)
    scheduler = OptunaPruningScheduler(pruner=make_pruner("wilcoxon", p_threshold=0.1)[0], over="folds", study=study)
    good, bad = new_trial(searcher, "good"), new_trial(searcher, "bad")
    scheduler.on_trial_add(None, good)
    results = fold_results(good, GOOD)
    for result in results:
        assert scheduler.on_trial_result(None, good, result) == TrialScheduler.CONTINUE
    scheduler.on_trial_complete(None, good, results[-1])
    scheduler.on_trial_add(None, bad)
    decisions = [scheduler.on_trial_result(None, bad, r) for r in fold_results(bad, BAD[:4], n_folds=len(BAD))]
    assert decisions[:3] == [TrialScheduler.CONTINUE] * 3  # 4 paired inner folds are needed for p < 0.1
    assert decisions[3] == TrialScheduler.STOP
    assert scheduler.pruned["bad"].step == 4 and "WilcoxonPruner" in scheduler.pruned["bad"].reason


def test_epoch_reports_are_ignored_when_pruning_over_folds_and_vice_versa(tmp_path: Path):
    study = handle(tmp_path)
    searcher = make_searcher(study)
    scheduler = OptunaPruningScheduler(
        pruner=optuna.pruners.MedianPruner(n_startup_trials=0), over="epochs", study=study
    )
    a = new_trial(searcher, "a")
    scheduler.on_trial_add(None, a)
    assert scheduler.on_trial_result(None, a, fold_results(a, [0.1], n_folds=2)[0]) == TrialScheduler.CONTINUE
    assert scheduler.study(1).trials[0].intermediate_values == {}  # the fold summary is not an epoch
    no_step = epoch_result(1, 0.7)
    del no_step["prune_step"]
    scheduler.on_trial_result(None, a, no_step)  # an epoch without a step on the schedule: not reported
    assert scheduler.study(1).trials[0].intermediate_values == {}
    scheduler.on_trial_result(None, a, epoch_result(5, 0.5, unit=2))
    assert scheduler.study(1).trials[0].intermediate_values == {5: 0.5}  # at its prune_step

    folds = OptunaPruningScheduler(pruner=make_pruner("wilcoxon")[0], over="folds", study=study)
    b = new_trial(searcher, "b")
    folds.on_trial_add(None, b)
    folds.on_trial_result(None, b, epoch_result(1, 0.5))
    folds.on_trial_result(None, b, fold_results(b, [0.4], n_folds=2)[0])
    assert folds.study(1).trials[1].intermediate_values == {1: 0.4}  # at its inner fold (unit)


def median_after_one_good_trial(tmp_path: Path):
    """A median pruner over epochs whose study holds one complete trial (UA 0.4, 0.5, 0.6), and a
    second trial just added: (scheduler, that trial)."""
    study = handle(tmp_path)
    searcher = make_searcher(study)
    scheduler = OptunaPruningScheduler(
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1), over="epochs", study=study
    )
    a, b = new_trial(searcher, "a"), new_trial(searcher, "b")
    scheduler.on_trial_add(None, a)
    for step, ua in enumerate((0.4, 0.5, 0.6), start=1):
        scheduler.on_trial_result(None, a, epoch_result(step, ua, n_folds=1))
    scheduler.on_trial_complete(None, a, fold_results(a, [0.6])[-1])
    scheduler.on_trial_add(None, b)
    return scheduler, b


def test_median_pruner_stops_the_worse_trial_at_the_same_epoch(tmp_path: Path):
    scheduler, b = median_after_one_good_trial(tmp_path)
    assert scheduler.on_trial_result(None, b, epoch_result(1, 0.25, n_folds=1)) == TrialScheduler.STOP


def test_a_trial_is_never_pruned_at_its_last_epoch(tmp_path: Path):
    """After its last epoch a trial's training is all done: stopping it would save nothing and
    would record a finished trial as pruned."""
    scheduler, b = median_after_one_good_trial(tmp_path)
    last = {**epoch_result(3, 0.25, n_folds=1), FINAL_STEP: True}
    assert scheduler.on_trial_result(None, b, last) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, b, {**last, FINAL_STEP: False}) == TrialScheduler.STOP


def test_make_pruner_names_the_kinds():
    assert make_pruner("none") == (None, "folds")
    assert make_pruner("wilcoxon")[1] == "folds" and make_pruner("median")[1] == "epochs"
    with pytest.raises(ValueError, match="wilcoxon, median, hyperband, none"):
        make_pruner("asha")


def test_make_pruner_builds_every_kind_the_config_accepts_with_its_options():
    expected = {"wilcoxon": "WilcoxonPruner", "median": "MedianPruner", "hyperband": "HyperbandPruner", "none": None}
    assert set(PRUNER_KINDS) == set(expected)
    for kind in PRUNER_KINDS:
        options = PrunerConfig(kind=kind).options
        pruner, _ = make_pruner(kind, **options)
        assert (None if pruner is None else type(pruner).__name__) == expected[kind]
    median, _ = make_pruner("median", n_startup_trials=7, n_warmup_steps=3)
    assert (median._n_startup_trials, median._n_warmup_steps) == (7, 3)  # the options reach the pruner


@pytest.mark.parametrize("over", ["folds", "epochs"])
def test_test_ua_never_changes_a_pruning_decision(tmp_path: Path, over):
    """Validation says 'bad' is worse on every inner fold; test says the reverse. The decisions
    are the same as with honest test values, and follow validation."""

    def decisions(run: str, test_of) -> list[str]:
        study = handle(tmp_path, run)
        searcher = make_searcher(study)
        pruner = make_pruner("wilcoxon", p_threshold=0.1)[0] if over == "folds" else None
        pruner = pruner or optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
        scheduler = OptunaPruningScheduler(pruner=pruner, over=over, study=study)
        out = []
        for name, uas in (("good", GOOD), ("bad", BAD)):
            trial = new_trial(searcher, name)
            scheduler.on_trial_add(None, trial)
            summaries = fold_results(trial, uas)
            for unit, (ua, summary) in enumerate(zip(uas, summaries, strict=True), start=1):
                epoch = epoch_result(unit, ua, unit=unit, n_folds=len(uas)) | {"test_ua": test_of(ua)}
                summary = summary | {FOLD_TEST_UA: test_of(ua), MEAN_TEST_UA: test_of(summary["mean_valid_ua"])}
                for result in (epoch, summary):
                    decision = scheduler.on_trial_result(None, trial, result)
                    out.append(decision)
                    if decision == TrialScheduler.STOP:
                        return out
            scheduler.on_trial_complete(None, trial, summaries[-1] | {MEAN_TEST_UA: test_of(0.5)})
        return out

    honest = decisions("honest", lambda ua: ua)
    reversed_ = decisions("reversed", lambda ua: 1.0 - ua)  # test order is the reverse of validation order
    assert honest == reversed_
    assert honest[-1] == TrialScheduler.STOP  # and validation pruned the trial that test would have favoured
