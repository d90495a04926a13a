"""Optuna pruners driving Ray Tune: a small TrialScheduler that lets each outer fold's study decide.

Ray's ``OptunaSearch`` uses Optuna only as a sampler (its pruner is fixed to ``NopPruner``), so
this scheduler reports every search trial's validation figures to the Optuna trial that the
searcher (``orchestrator.nested``) asked from the trial's outer-fold study, asks that study's
pruner whether to stop, and tells the study how the trial ended. Two ways to step:

- ``over="folds"`` (``WilcoxonPruner``): one value per finished inner fold (its *validation*
  UA; test UA never reaches a pruner), the step being the inner fold's number, so a trial is
  compared with its study's best trial inner fold by inner fold, as the Wilcoxon signed-rank
  test over paired folds expects.
- ``over="epochs"`` (``MedianPruner``, ``HyperbandPruner``): the validation UA after every
  epoch at the trial's ``prune_step``: inner fold, phase (search, then evaluation) and epoch laid
  on one fixed schedule (``orchestrator.trial``), so one step means the same phase and epoch of
  the same inner fold in every trial, also when the collapse guard ends a search early.

Each step is reported once (a replayed step keeps its first value, as Optuna does). Every inner
fold summary also sets the user attributes ``fold<k>_valid_ua`` and ``fold<k>_test_ua`` (k the
inner fold, or the outer fold without inner folds); the end of a trial sets ``mean_test_ua``;
every decision sets ``pruner_history``, the number of complete trials the pruner compared with.

This is the one place that decides "pruned" (``TrialState.PRUNED`` in the study) and tells every
other end (``orchestrator.study.trial_outcome``: COMPLETE with the mean validation UA over all
inner folds, or FAIL); progress lines, trial status files and the leaderboard read it from there.

The studies live in the experiment's journal (``orchestrator.study``). Tune pickles the
scheduler when the experiment starts and rebuilds it from that pickle on ``--resume``; the
pickle holds only the ``StudyHandle``, and the rebuilt scheduler reopens the journal, finds its
trials by ``tune_trial_id`` and so decides with the whole history.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.config.tune import PRUNER_KINDS
from orchestrator.selection import EPOCH_OBJECTIVE, FOLD_OBJECTIVE, FOLD_TEST_UA, MEAN_TEST_UA, OBJECTIVE
from orchestrator.study import (
    OUTER_FOLD_KEY,
    PRUNED_REASON,
    TUNE_TRIAL_ID,
    OpenStudies,
    StudyHandle,
    find_trial,
    trial_outcome,
)

PruneOver = Literal["folds", "epochs"]
FOLD_REPORT = "fold"  # value of result["report"] for the per-inner-fold summary a trial reports
PRUNE_STEP = "prune_step"  # an epoch report's step on the trial's fixed schedule (orchestrator.trial)
FINAL_STEP = "final_step"  # true on the trial's very last epoch report (never pruned: nothing left to save)
PRUNER_HISTORY = "pruner_history"  # user attribute: complete trials at the trial's latest decision


@dataclass(frozen=True)
class PruneDecision:
    trial_id: str
    step: int
    value: float
    reason: str


class OptunaPruningScheduler(FIFOScheduler):
    """Stop Tune trials with their outer fold's Optuna pruner and tell each study how its trials ended."""

    def __init__(
        self,
        *,
        pruner: optuna.pruners.BasePruner,
        over: PruneOver,
        study: StudyHandle,
        distributions: Mapping[str, BaseDistribution] | None = None,
        multi_objective: bool = False,
    ) -> None:
        super().__init__()
        if over not in ("folds", "epochs"):
            raise ValueError(f"over must be 'folds' or 'epochs', but got {over!r}.")
        self.pruner = pruner
        self.over = over
        self.handle = study
        self.distributions = dict(distributions or {})
        self.multi_objective = multi_objective
        self._reset()

    def _reset(self) -> None:
        self.study = OpenStudies(self.handle, pruner=self.pruner, multi_objective=self.multi_objective)
        self._optuna_ids: dict[str, int] = {}  # Tune trial id -> Optuna trial id (storage's)
        self.pruned: dict[str, PruneDecision] = {}  # decided by this process

    # What Tune pickles (at the start, into tuner.pkl): the settings and the handle, no study.
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("study", "_optuna_ids", "pruned")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    @staticmethod
    def _fold(trial: Trial) -> int | None:
        config = getattr(trial, "config", None) or {}
        return None if OUTER_FOLD_KEY not in config else int(config[OUTER_FOLD_KEY])

    def _frozen(self, trial: Trial) -> FrozenTrial | None:
        fold = self._fold(trial)
        if fold is None:  # not a search trial (no study owns it)
            return None
        study = self.study(fold)
        optuna_id = self._optuna_ids.get(trial.trial_id)
        if optuna_id is not None:
            return study._storage.get_trial(optuna_id)
        frozen = find_trial(study, trial.trial_id)
        if frozen is not None:
            self._optuna_ids[trial.trial_id] = frozen._trial_id
        return frozen

    def _running(self, trial: Trial) -> optuna.trial.Trial | None:
        """The trial's running Optuna trial; None once it has finished (or for no study)."""
        frozen = self._frozen(trial)
        if frozen is None or frozen.state != TrialState.RUNNING:
            return None
        return optuna.trial.Trial(self.study(self._fold(trial)), frozen._trial_id)

    def _rerun(self, trial: Trial, failed: FrozenTrial) -> None:
        """A trial that failed in an earlier driver run and that --resume runs again: a new Optuna
        trial with the same parameters (enqueued, so the sampler is not asked), starting with the
        failed one's reports."""
        study = self.study(self._fold(trial))
        study.enqueue_trial(dict(failed.params), user_attrs={TUNE_TRIAL_ID: trial.trial_id, "retry_of": failed.number})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            optuna_trial = study.ask(fixed_distributions=self.distributions or failed.distributions)
        for step, value in sorted(failed.intermediate_values.items()):
            optuna_trial.report(value, step)
        for key, value in failed.user_attrs.items():
            if key not in (TUNE_TRIAL_ID, "retry_of"):
                optuna_trial.set_user_attr(key, value)
        self._optuna_ids[trial.trial_id] = optuna_trial._trial_id
        self._save()

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        frozen = self._frozen(trial)
        if frozen is None:
            return
        # A trial restored by --resume: Tune re-adds every trial of the experiment.
        status = getattr(trial, "status", None)
        if frozen.state == TrialState.RUNNING and status == Trial.TERMINATED:
            self._finish(trial, dict(getattr(trial, "last_result", None) or {}), error=False)  # ended before the crash
        elif frozen.state == TrialState.FAIL and status in (Trial.PENDING, Trial.PAUSED):
            self._rerun(trial, frozen)

    def _step_and_value(self, result: dict[str, Any]) -> tuple[int, float] | None:
        if self.over == "folds":
            if result.get("report") != FOLD_REPORT:
                return None
            return int(result["unit"]), float(result[FOLD_OBJECTIVE])
        if result.get("report") == FOLD_REPORT or PRUNE_STEP not in result or EPOCH_OBJECTIVE not in result:
            return None
        return int(result[PRUNE_STEP]), float(result[EPOCH_OBJECTIVE])

    def on_trial_result(self, tune_controller, trial: Trial, result: dict[str, Any]) -> str:
        optuna_trial = self._running(trial)
        if optuna_trial is None:
            return TrialScheduler.CONTINUE
        study = self.study(self._fold(trial))
        if result.get("report") == FOLD_REPORT:
            # k: the inner fold, or without inner folds (one unit) the outer fold, as documented above
            k = int(
                result["inner_fold"] if result.get("inner_fold") is not None else result.get("fold", result["unit"])
            )
            optuna_trial.set_user_attr(f"fold{k}_valid_ua", float(result[FOLD_OBJECTIVE]))
            if FOLD_TEST_UA in result:
                optuna_trial.set_user_attr(f"fold{k}_test_ua", float(result[FOLD_TEST_UA]))
        observed = self._step_and_value(result)
        if observed is None or self.multi_objective:  # Optuna prunes single-objective studies only
            return TrialScheduler.CONTINUE
        step, value = observed
        frozen = study._storage.get_trial(optuna_trial._trial_id)
        if step not in frozen.intermediate_values:
            optuna_trial.report(value, step)
        history = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        optuna_trial.set_user_attr(PRUNER_HISTORY, history)
        last_fold = result.get("report") == FOLD_REPORT and int(result.get("folds_done", 0)) >= int(
            result.get("n_folds", 1 << 30)
        )
        if (
            last_fold or result.get(FINAL_STEP) or not optuna_trial.should_prune()
        ):  # after its last inner fold a trial is complete, never pruned
            return TrialScheduler.CONTINUE
        metric = FOLD_OBJECTIVE if self.over == "folds" else EPOCH_OBJECTIVE
        decision = PruneDecision(
            trial_id=trial.trial_id,
            step=step,
            value=value,
            reason=f"{type(self.pruner).__name__} at {'inner fold' if self.over == 'folds' else 'step'} {step} "
            f"({metric}={value:.3f}, against {history} complete trial(s) of outer fold {self._fold(trial)})",
        )
        self.pruned[trial.trial_id] = decision
        optuna_trial.set_user_attr(PRUNED_REASON, decision.reason)
        study.tell(optuna_trial, state=TrialState.PRUNED)
        self._save()
        return TrialScheduler.STOP

    def _finish(self, trial: Trial, result: dict[str, Any], *, error: bool) -> None:
        optuna_trial = self._running(trial)
        if optuna_trial is None:  # pruned (or ended) already
            return
        if MEAN_TEST_UA in result and result[MEAN_TEST_UA] == result[MEAN_TEST_UA]:
            optuna_trial.set_user_attr(MEAN_TEST_UA, float(result[MEAN_TEST_UA]))
        outcome = trial_outcome(result, error=error, objective=OBJECTIVE, multi_objective=self.multi_objective)
        study = self.study(self._fold(trial))
        if outcome.values is None:
            study.tell(optuna_trial, state=outcome.state)
        else:
            study.tell(optuna_trial, list(outcome.values))
        self._save()

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict[str, Any] | None) -> None:
        self._finish(trial, dict(result or {}), error=False)

    def on_trial_error(self, tune_controller, trial: Trial) -> None:
        # Called once Tune gives up on the trial (retries under max_failures do not come here).
        self._finish(trial, dict(getattr(trial, "last_result", None) or {}), error=True)

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        self._finish(trial, dict(getattr(trial, "last_result", None) or {}), error=False)

    def state_of(self, trial: Trial) -> TrialState | None:
        """The study's state of ``trial`` (None for a trial no study owns)."""
        frozen = self._frozen(trial)
        return None if frozen is None else frozen.state

    def _save(self) -> None:
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
