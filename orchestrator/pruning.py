"""Optuna pruners driving Ray Tune: a small TrialScheduler that asks Optuna whether to stop.

Ray's ``OptunaSearch`` uses Optuna only as a sampler (its pruner is fixed to ``NopPruner``), so
this scheduler keeps its own Optuna study, mirrors every Tune trial as an Optuna trial (its
sampled parameters, the Tune trial id as the user attribute ``tune_trial_id``), reports the
chosen intermediate value at the chosen step, and returns ``STOP`` when the pruner says so. Two
ways to step:

- ``over="folds"`` (default for k-fold runs, with ``WilcoxonPruner``): one value per finished
  fold (its *validation* UA; test UA never reaches a pruner), the step being the fold number, so trials are compared fold by fold,
  as the Wilcoxon signed-rank test over paired folds expects.
- ``over="epochs"`` (``MedianPruner``, ``HyperbandPruner``): the validation UA after every
  epoch, the step being the trial's epoch counter across its folds (Tune's
  ``training_iteration`` less the fold summaries before it, so an epoch replayed from a
  checkpoint after a restart lands on the step it had).

Each step is reported once (a replayed step keeps its first value, as Optuna does). Every fold
summary also sets the user attributes ``fold<k>_valid_ua`` and ``fold<k>_test_ua``; the end of
a trial sets ``mean_test_ua``; every decision sets ``pruner_history``, the number of complete
trials the pruner compared with.

The study lives in the experiment's journal (``orchestrator.study``). Tune pickles the
scheduler when the experiment starts and rebuilds it from that pickle on ``--resume``; the
pickle holds only the ``StudyHandle``, and the rebuilt scheduler reopens the journal, finds its
trials by ``tune_trial_id`` and so decides with the whole history. Without a handle (unit
tests) the study is in memory.

A pruned trial ends like a stopped one; the driver recognises it by its unfinished folds (see
``orchestrator.progress``), and its finished folds stay in the leaderboard.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.config.space import optuna_category
from orchestrator.config.tune import PRUNER_KINDS
from orchestrator.selection import EPOCH_OBJECTIVE, FOLD_OBJECTIVE, FOLD_TEST_UA, MEAN_TEST_UA, OBJECTIVE
from orchestrator.study import StudyHandle

PruneOver = Literal["folds", "epochs"]
FOLD_REPORT = "fold"  # value of result["report"] for the per-fold summary a trial reports
TUNE_TRIAL_ID = "tune_trial_id"  # user attribute: the Tune trial an Optuna trial mirrors
PRUNER_HISTORY = "pruner_history"  # user attribute: complete trials at the trial's latest decision


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
        study: StudyHandle | None = None,
        distributions: Mapping[str, BaseDistribution] | None = None,
        fold_metric: str = FOLD_OBJECTIVE,
        epoch_metric: str = EPOCH_OBJECTIVE,
        final_metric: str = OBJECTIVE,
    ) -> None:
        super().__init__()
        if over not in ("folds", "epochs"):
            raise ValueError(f"over must be 'folds' or 'epochs', but got {over!r}.")
        self.pruner = pruner
        self.over = over
        self.handle = study
        self.distributions = dict(distributions or {})
        self.fold_metric, self.epoch_metric, self.final_metric = fold_metric, epoch_metric, final_metric
        self._reset()

    def _reset(self) -> None:
        self._study: optuna.Study | None = None
        self._optuna_ids: dict[str, int] = {}  # Tune trial id -> Optuna trial id (storage's)
        self.pruned: dict[str, PruneDecision] = {}  # decided by this process

    # What Tune pickles (at the start, into tuner.pkl): the settings and the handle, no study.
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_study", "_optuna_ids", "pruned")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    @property
    def study(self) -> optuna.Study:
        """The study, opened (and its trials indexed by Tune trial id) on first use."""
        if self._study is None:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            if self.handle is None:
                self._study = optuna.create_study(direction="maximize", pruner=self.pruner)
            else:
                self._study = self.handle.open(pruner=self.pruner)
            for frozen in self._study.get_trials(deepcopy=False):  # the newest one wins (a retried trial)
                if TUNE_TRIAL_ID in frozen.user_attrs:
                    self._optuna_ids[frozen.user_attrs[TUNE_TRIAL_ID]] = frozen._trial_id
        return self._study

    def _frozen(self, trial: Trial) -> FrozenTrial | None:
        study = self.study  # opened first: that indexes the trials of earlier driver runs
        optuna_id = self._optuna_ids.get(trial.trial_id)
        return None if optuna_id is None else study._storage.get_trial(optuna_id)

    def _params(self, trial: Trial) -> dict[str, Any]:
        config = getattr(trial, "config", None) or {}
        params = {}
        for name, distribution in self.distributions.items():
            if name in config:
                value = config[name]
                params[name] = optuna_category(value) if isinstance(distribution, CategoricalDistribution) else value
        return params

    def _new_optuna_trial(self, trial: Trial, *, retry_of: FrozenTrial | None = None) -> optuna.trial.Trial:
        """A running Optuna trial for ``trial``, holding its sampled parameters; a retry of a
        trial that failed in an earlier driver run starts with that one's reports."""
        study = self.study
        attrs: dict[str, Any] = {TUNE_TRIAL_ID: trial.trial_id}
        if retry_of is not None:
            attrs["retry_of"] = retry_of.number
        study.enqueue_trial(self._params(trial), user_attrs=attrs)
        with warnings.catch_warnings():  # a float outside its range (Ray's quniform rounding) is kept as it is
            warnings.simplefilter("ignore", UserWarning)
            optuna_trial = study.ask(fixed_distributions=self.distributions)
        if retry_of is not None:
            for step, value in sorted(retry_of.intermediate_values.items()):
                optuna_trial.report(value, step)
            for key, value in retry_of.user_attrs.items():
                if key not in attrs:
                    optuna_trial.set_user_attr(key, value)
        self._optuna_ids[trial.trial_id] = optuna_trial._trial_id
        return optuna_trial

    def _running(self, trial: Trial) -> optuna.trial.Trial | None:
        """The trial's running Optuna trial (made when new); None once it has finished."""
        frozen = self._frozen(trial)
        if frozen is None:
            return self._new_optuna_trial(trial)
        if frozen.state != TrialState.RUNNING:
            return None
        return optuna.trial.Trial(self.study, frozen._trial_id)

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        frozen = self._frozen(trial)
        if frozen is None:
            self._new_optuna_trial(trial)
            return
        # A trial restored by --resume: Tune re-adds every trial of the experiment.
        status = getattr(trial, "status", None)
        if frozen.state == TrialState.RUNNING and status == Trial.TERMINATED:
            self._finish(trial, dict(getattr(trial, "last_result", None) or {}))  # ended just before the crash
        elif frozen.state == TrialState.FAIL and status in (Trial.PENDING, Trial.PAUSED):
            self._new_optuna_trial(trial, retry_of=frozen)  # an errored trial that --resume runs again

    def _step_and_value(self, result: dict[str, Any]) -> tuple[int, float] | None:
        if self.over == "folds":
            if result.get("report") != FOLD_REPORT:
                return None
            return int(result["fold"]), float(result[self.fold_metric])
        if result.get("report") == FOLD_REPORT or self.epoch_metric not in result:
            return None
        step = int(result["training_iteration"]) - int(result.get("folds_done", 0))
        return step, float(result[self.epoch_metric])

    def on_trial_result(self, tune_controller, trial: Trial, result: dict[str, Any]) -> str:
        optuna_trial = self._running(trial)
        if optuna_trial is None:
            return TrialScheduler.CONTINUE
        if result.get("report") == FOLD_REPORT:
            fold = int(result["fold"])
            optuna_trial.set_user_attr(f"fold{fold}_valid_ua", float(result[self.fold_metric]))
            if FOLD_TEST_UA in result:
                optuna_trial.set_user_attr(f"fold{fold}_test_ua", float(result[FOLD_TEST_UA]))
        observed = self._step_and_value(result)
        if observed is None:
            return TrialScheduler.CONTINUE
        step, value = observed
        frozen = self.study._storage.get_trial(optuna_trial._trial_id)
        if step not in frozen.intermediate_values:
            optuna_trial.report(value, step)
        history = len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        optuna_trial.set_user_attr(PRUNER_HISTORY, history)
        last_fold = result.get("report") == FOLD_REPORT and int(result.get("folds_done", 0)) >= int(
            result.get("n_folds", 1 << 30)
        )
        if last_fold or not optuna_trial.should_prune():  # after its last fold a trial is complete, never pruned
            return TrialScheduler.CONTINUE
        decision = PruneDecision(
            trial_id=trial.trial_id,
            step=step,
            value=value,
            reason=f"{type(self.pruner).__name__} at {self.over[:-1]} {step} "
            f"({self.fold_metric if self.over == 'folds' else self.epoch_metric}={value:.3f}, "
            f"against {history} complete trial(s))",
        )
        self.pruned[trial.trial_id] = decision
        self.study.tell(optuna_trial, state=TrialState.PRUNED)
        self._save()
        return TrialScheduler.STOP

    def _finish(self, trial: Trial, result: dict[str, Any]) -> None:
        optuna_trial = self._running(trial)
        if optuna_trial is None:  # pruned (or failed) already
            return
        if MEAN_TEST_UA in result and result[MEAN_TEST_UA] == result[MEAN_TEST_UA]:
            optuna_trial.set_user_attr(MEAN_TEST_UA, float(result[MEAN_TEST_UA]))
        value = result.get(self.final_metric)
        if value is None or value != value:  # no final metric (stopped before any fold): not comparable
            self.study.tell(optuna_trial, state=TrialState.FAIL)
        else:
            self.study.tell(optuna_trial, float(value))
        self._save()

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict[str, Any] | None) -> None:
        self._finish(trial, dict(result or {}))

    def on_trial_error(self, tune_controller, trial: Trial) -> None:
        # Called once Tune gives up on the trial (retries under max_failures do not come here).
        optuna_trial = self._running(trial)
        if optuna_trial is not None:
            self.study.tell(optuna_trial, state=TrialState.FAIL)
            self._save()

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        optuna_trial = self._running(trial) if self._frozen(trial) is not None else None
        if optuna_trial is not None:
            self.study.tell(optuna_trial, state=TrialState.FAIL)
            self._save()

    def _save(self) -> None:
        if self.handle is not None:
            self.handle.save()

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
