"""The Optuna pruning bridge decides with real Optuna pruners on Tune-shaped results."""

from types import SimpleNamespace

import optuna
import pytest
from ray.tune.schedulers import TrialScheduler

from orchestrator.config import PRUNER_KINDS, PrunerConfig
from orchestrator.pruning import FOLD_REPORT, OptunaPruningScheduler, make_pruner
from orchestrator.selection import FOLD_OBJECTIVE, FOLD_TEST_UA, MEAN_TEST_UA, OBJECTIVE


def trial(trial_id: str):
    return SimpleNamespace(trial_id=trial_id)


def fold_result(fold: int, ua: float, mean: float, *, test_ua: float | None = None) -> dict:
    """A trial's fold summary: validation UA ``ua`` (what selects), test UA beside it."""
    test = ua if test_ua is None else test_ua
    return {
        "report": FOLD_REPORT,
        "fold": fold,
        FOLD_OBJECTIVE: ua,
        OBJECTIVE: mean,
        FOLD_TEST_UA: test,
        MEAN_TEST_UA: test,
    }


def test_wilcoxon_stops_a_trial_clearly_worse_than_the_best_across_folds():
    scheduler = OptunaPruningScheduler(pruner=optuna.pruners.WilcoxonPruner(p_threshold=0.1), over="folds")
    good, bad = trial("good"), trial("bad")
    scheduler.on_trial_add(None, good)
    for fold, ua in enumerate([0.60, 0.62, 0.58, 0.65, 0.61], start=1):
        assert scheduler.on_trial_result(None, good, fold_result(fold, ua, ua)) == TrialScheduler.CONTINUE
    scheduler.on_trial_complete(None, good, {OBJECTIVE: 0.612})
    scheduler.on_trial_add(None, bad)
    decisions = [
        scheduler.on_trial_result(None, bad, fold_result(fold, ua, ua))
        for fold, ua in enumerate([0.30, 0.31, 0.29, 0.33], start=1)
    ]
    assert decisions[:3] == [TrialScheduler.CONTINUE] * 3  # 4 paired folds are needed for p < 0.1
    assert decisions[3] == TrialScheduler.STOP
    assert scheduler.pruned["bad"].step == 4 and "WilcoxonPruner" in scheduler.pruned["bad"].reason


def epoch_result(iteration: int, ua: float, *, folds_done: int = 0) -> dict:
    """An epoch report as Tune hands it over: ``training_iteration`` counts every report."""
    return {"report": "epoch", "valid_ua": ua, "training_iteration": iteration, "folds_done": folds_done}


def test_epoch_reports_are_ignored_when_pruning_over_folds_and_vice_versa():
    scheduler = OptunaPruningScheduler(pruner=optuna.pruners.MedianPruner(n_startup_trials=0), over="epochs")
    scheduler.on_trial_add(None, trial("a"))
    assert scheduler.on_trial_result(None, trial("a"), fold_result(1, 0.1, 0.1)) == TrialScheduler.CONTINUE
    assert scheduler.study.trials[0].intermediate_values == {}  # the fold summary is not an epoch
    scheduler.on_trial_result(None, trial("a"), epoch_result(2, 0.5, folds_done=1))
    assert scheduler.study.trials[0].intermediate_values == {1: 0.5}  # 2nd report, 1st epoch

    folds = OptunaPruningScheduler(pruner=make_pruner("wilcoxon")[0], over="folds")
    folds.on_trial_add(None, trial("a"))
    folds.on_trial_result(None, trial("a"), epoch_result(1, 0.5))
    folds.on_trial_result(None, trial("a"), fold_result(1, 0.4, 0.4))
    assert folds.study.trials[0].intermediate_values == {1: 0.4}


def test_median_pruner_stops_the_worse_trial_at_the_same_epoch():
    scheduler = OptunaPruningScheduler(pruner=optuna.pruners.MedianPruner(n_startup_trials=1), over="epochs")
    scheduler.on_trial_add(None, trial("a"))
    for iteration, ua in enumerate((0.4, 0.5, 0.6), start=1):
        scheduler.on_trial_result(None, trial("a"), epoch_result(iteration, ua))
    scheduler.on_trial_complete(None, trial("a"), {OBJECTIVE: 0.6})
    scheduler.on_trial_add(None, trial("b"))
    assert scheduler.on_trial_result(None, trial("b"), epoch_result(1, 0.25)) == TrialScheduler.STOP


def test_make_pruner_names_the_kinds():
    assert make_pruner("none") == (None, "folds")
    assert make_pruner("wilcoxon")[1] == "folds" and make_pruner("median")[1] == "epochs"
    with pytest.raises(ValueError, match="wilcoxon, median, hyperband, none"):
        make_pruner("asha")


def test_make_pruner_knows_every_kind_the_config_accepts():
    for kind in PRUNER_KINDS:
        make_pruner(kind, **PrunerConfig(kind=kind).options)


@pytest.mark.parametrize("over", ["folds", "epochs"])
def test_test_ua_never_changes_a_pruning_decision(over):
    """Validation says 'bad' is worse on every fold; test says the reverse. The decisions are the
    same as with honest test values, and follow validation."""

    def decisions(test_of) -> list[str]:
        pruner = optuna.pruners.WilcoxonPruner(p_threshold=0.1) if over == "folds" else None
        pruner = pruner or optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
        scheduler = OptunaPruningScheduler(pruner=pruner, over=over)
        out = []
        for name, uas in (("good", [0.60, 0.62, 0.58, 0.65, 0.61]), ("bad", [0.30, 0.31, 0.29, 0.33, 0.32])):
            scheduler.on_trial_add(None, trial(name))
            for fold, ua in enumerate(uas, start=1):
                epoch = {"report": "epoch", "fold": fold, "valid_ua": ua, "test_ua": test_of(ua)}
                epoch |= {"training_iteration": 2 * fold - 1, "folds_done": fold - 1}
                fold_summary = fold_result(fold, ua, ua, test_ua=test_of(ua))
                for result in (epoch, fold_summary):
                    decision = scheduler.on_trial_result(None, trial(name), result)
                    out.append(decision)
                    if decision == TrialScheduler.STOP:
                        return out
            scheduler.on_trial_complete(None, trial(name), {OBJECTIVE: sum(uas) / 5, MEAN_TEST_UA: test_of(0.5)})
        return out

    honest = decisions(lambda ua: ua)
    reversed_ = decisions(lambda ua: 1.0 - ua)  # test order is the reverse of validation order
    assert honest == reversed_
    assert honest[-1] == TrialScheduler.STOP  # and validation pruned the trial that test would have favoured
