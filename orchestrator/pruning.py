"""Optuna pruners driving Ray Tune: a small TrialScheduler that asks Optuna whether to stop.

Ray's ``OptunaSearch`` uses Optuna only as a sampler (its pruner is fixed to ``NopPruner``), so
this scheduler keeps its own in-memory Optuna study, mirrors every Tune trial as an Optuna
trial, reports the chosen intermediate value at the chosen step, and returns ``STOP`` when the
pruner says so. Two ways to step:

- ``over="folds"`` (default for k-fold runs, with ``WilcoxonPruner``): one value per finished
  fold (its *validation* UA; test UA never reaches a pruner), the step being the fold number, so trials are compared fold by fold,
  as the Wilcoxon signed-rank test over paired folds expects.
- ``over="epochs"`` (``MedianPruner``, ``HyperbandPruner``): the validation UA after every
  epoch, the step being the trial's epoch counter across its folds.

A pruned trial ends like a stopped one; the driver recognises it by its unfinished folds (see
``orchestrator.progress``), and its finished folds stay in the leaderboard.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import optuna
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.config.tune import PRUNER_KINDS
from orchestrator.selection import EPOCH_OBJECTIVE, FOLD_OBJECTIVE, OBJECTIVE

PruneOver = Literal["folds", "epochs"]
FOLD_REPORT = "fold"  # value of result["report"] for the per-fold summary a trial reports


@dataclass(frozen=True)
class PruneDecision:
    trial_id: str
    step: int
    value: float
    reason: str


class OptunaPruningScheduler(FIFOScheduler):
    """Stop Tune trials with any Optuna pruner (``WilcoxonPruner``, ``MedianPruner``, ...)."""

    def __init__(
        self,
        *,
        pruner: optuna.pruners.BasePruner,
        over: PruneOver,
        fold_metric: str = FOLD_OBJECTIVE,
        epoch_metric: str = EPOCH_OBJECTIVE,
        final_metric: str = OBJECTIVE,
    ) -> None:
        super().__init__()
        if over not in ("folds", "epochs"):
            raise ValueError(f"over must be 'folds' or 'epochs', but got {over!r}.")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.pruner = pruner
        self.over = over
        self.fold_metric, self.epoch_metric, self.final_metric = fold_metric, epoch_metric, final_metric
        self.study = optuna.create_study(direction="maximize", pruner=pruner)
        self._optuna_trials: dict[str, optuna.trial.Trial] = {}
        self._epoch_steps: dict[str, int] = {}
        self.pruned: dict[str, PruneDecision] = {}

    def _optuna_trial(self, trial: Trial) -> optuna.trial.Trial:
        if trial.trial_id not in self._optuna_trials:
            self._optuna_trials[trial.trial_id] = self.study.ask()
        return self._optuna_trials[trial.trial_id]

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        self._optuna_trial(trial)

    def _step_and_value(self, trial: Trial, result: dict[str, Any]) -> tuple[int, float] | None:
        if self.over == "folds":
            if result.get("report") != FOLD_REPORT:
                return None
            return int(result["fold"]), float(result[self.fold_metric])
        if result.get("report") == FOLD_REPORT or self.epoch_metric not in result:
            return None
        step = self._epoch_steps.get(trial.trial_id, 0) + 1
        self._epoch_steps[trial.trial_id] = step
        return step, float(result[self.epoch_metric])

    def on_trial_result(self, tune_controller, trial: Trial, result: dict[str, Any]) -> str:
        observed = self._step_and_value(trial, result)
        if observed is None:
            return TrialScheduler.CONTINUE
        step, value = observed
        optuna_trial = self._optuna_trial(trial)
        optuna_trial.report(value, step)
        if not optuna_trial.should_prune():
            return TrialScheduler.CONTINUE
        decision = PruneDecision(
            trial_id=trial.trial_id,
            step=step,
            value=value,
            reason=f"{type(self.pruner).__name__} at {self.over[:-1]} {step} "
            f"({self.fold_metric if self.over == 'folds' else self.epoch_metric}={value:.3f})",
        )
        self.pruned[trial.trial_id] = decision
        self.study.tell(optuna_trial, state=optuna.trial.TrialState.PRUNED)
        return TrialScheduler.STOP

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict[str, Any] | None) -> None:
        if trial.trial_id in self.pruned:
            return
        optuna_trial = self._optuna_trial(trial)
        value = (result or {}).get(self.final_metric)
        if value is None or value != value:  # no final metric (stopped before any fold): not comparable
            self.study.tell(optuna_trial, state=optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(optuna_trial, float(value))

    def on_trial_error(self, tune_controller, trial: Trial) -> None:
        # An errored trial may be retried (max_failures) under the same id: keep its Optuna
        # trial open so its history continues; nothing to tell yet.
        pass

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        optuna_trial = self._optuna_trials.get(trial.trial_id)
        if optuna_trial is not None and trial.trial_id not in self.pruned:
            try:
                self.study.tell(optuna_trial, state=optuna.trial.TrialState.FAIL)
            except RuntimeError:  # already finished
                pass

    def debug_string(self) -> str:
        return f"Optuna {type(self.pruner).__name__} over {self.over}: {len(self.pruned)} trial(s) pruned."


def _wilcoxon(**options: Any) -> optuna.pruners.BasePruner:
    with warnings.catch_warnings():  # "experimental since 3.6": stable enough, and documented
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.pruners.WilcoxonPruner(**options)


_PRUNERS: Mapping[str, tuple[Callable[..., optuna.pruners.BasePruner] | None, PruneOver]] = {
    "wilcoxon": (_wilcoxon, "folds"),
    "median": (optuna.pruners.MedianPruner, "epochs"),
    "hyperband": (optuna.pruners.HyperbandPruner, "epochs"),
    "none": (None, "folds"),
}
"""The Optuna pruner of each of the config's ``PRUNER_KINDS`` and what it steps over."""


def make_pruner(kind: str, **options: Any) -> tuple[optuna.pruners.BasePruner | None, PruneOver]:
    """The Optuna pruner for a config's ``tune.pruner.kind`` and what it steps over."""
    if kind not in PRUNER_KINDS:
        raise ValueError(f"pruner kind must be one of {', '.join(PRUNER_KINDS)}, but got {kind!r}.")
    factory, over = _PRUNERS[kind]
    return (None if factory is None else factory(**options)), over
