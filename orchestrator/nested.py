"""Nested selection in Ray Tune's terms: a searcher that hands each new trial to an outer fold's study.

``tune.num_samples`` is the budget of EACH outer fold (times the grid size with searcher
``grid``): with F outer folds Tune runs ``F x num_samples`` trials, handed out in turn (trial 0
to the first fold, trial 1 to the second, ...), so every study advances at the same pace. For a
new trial the searcher asks that fold's study (``study.ask`` with the space's distributions), so
the study's own sampler proposes it, seeded by (``tune.seed``, fold), from that study's trials
only. The trial's config carries its outer fold under ``OUTER_FOLD_KEY``. A driver that reopens a
study on ``--resume`` seeds its sampler from the trials already there too, so it goes on with new
proposals instead of repeating the first ones.

Everything after the ask happens in the pruning scheduler (``orchestrator.pruning``), which sees
every result and every end of a trial: it reports validation figures, lets the study's pruner
decide, and tells the study the outcome (``orchestrator.study.trial_outcome``). So one place
decides "pruned", and the progress lines, trial status files and leaderboard read it from the
study.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState
from ray.tune.search import Searcher

from orchestrator.study import OUTER_FOLD_KEY, TUNE_TRIAL_ID, OpenStudies, StudyHandle

__all__ = ["ASK_INDEX", "OuterFoldSearcher", "fold_seed", "make_sampler"]

ASK_INDEX = "ask_index"  # user attribute: the trial's place in the order the searcher handed trials out


def fold_seed(seed: int | None, fold: int, *, trials_before: int = 0) -> int | None:
    """The sampler seed of outer fold ``fold``'s study, from (seed, fold), so studies differ and a
    rerun repeats; ``trials_before`` (the study's trials when a resumed driver reopens it) starts a
    new stream, or a restored sampler would propose the first trials' parameters again."""
    if seed is None:
        return None
    entropy = [int(seed), int(fold)] + ([int(trials_before)] if trials_before else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def make_sampler(
    kind: str, *, seed: int | None, distributions: Mapping[str, BaseDistribution], startup_trials: int = 10
) -> optuna.samplers.BaseSampler:
    """The Optuna sampler of a config's ``tune.searcher`` (``optuna-tpe``, ``random`` or ``grid``)."""
    if kind == "optuna-tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "grid":
        grid = {}
        for name, distribution in distributions.items():
            if not isinstance(distribution, CategoricalDistribution):
                raise ValueError(f"searcher grid needs categorical domains, but {name} is {distribution!r}.")
            grid[name] = list(distribution.choices)
        return optuna.samplers.GridSampler(grid, seed=seed)
    raise ValueError(f"searcher must be optuna-tpe, random or grid, but got {kind!r}.")


def grid_size(distributions: Mapping[str, BaseDistribution]) -> int:
    """Points of a grid over categorical ``distributions`` (1 without any)."""
    size = 1
    for distribution in distributions.values():
        size *= len(distribution.choices) if isinstance(distribution, CategoricalDistribution) else 1
    return size


class OuterFoldSearcher(Searcher):
    """Propose each trial from its own outer fold's Optuna study (ask), never from another fold's."""

    def __init__(
        self,
        *,
        study: StudyHandle,
        folds: Sequence[int],
        trials_per_fold: int,
        distributions: Mapping[str, BaseDistribution],
        fixed: Mapping[str, Any],
        sampler: str,
        seed: int | None,
        multi_objective: bool = False,
        startup_trials: int = 10,
    ) -> None:
        super().__init__(metric=None, mode=None)
        if not folds:
            raise ValueError("the searcher needs at least one outer fold.")
        if trials_per_fold < 1:
            raise ValueError(f"trials_per_fold must be >= 1, but got {trials_per_fold}.")
        self.handle = study
        self.folds = tuple(int(fold) for fold in folds)
        self.trials_per_fold = trials_per_fold
        self.distributions = dict(distributions)
        self.fixed = dict(fixed)
        self.sampler = sampler
        self.seed = seed
        self.multi_objective = multi_objective
        self.startup_trials = startup_trials
        self.assigned = 0
        self._reset()

    @property
    def total(self) -> int:
        """Trials over every outer fold (what ``tune.TuneConfig.num_samples`` must be)."""
        return self.trials_per_fold * len(self.folds)

    def _reset(self) -> None:
        self.study = OpenStudies(self.handle, multi_objective=self.multi_objective, sampler_for=self._sampler)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "study"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def _sampler(self, fold: int, trials_before: int) -> optuna.samplers.BaseSampler:
        """Outer fold ``fold``'s sampler, seeded from (seed, fold) and the trials its study already holds."""
        return make_sampler(
            self.sampler,
            seed=fold_seed(self.seed, fold, trials_before=trials_before),
            distributions=self.distributions,
            startup_trials=self.startup_trials,
        )

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # the space comes from the experiment's config, not from Tune's param_space

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.assigned >= self.total:
            return Searcher.FINISHED
        index = self.assigned
        fold = self.folds[index % len(self.folds)]
        study = self.study(fold)
        trial = self._unclaimed(study, index)
        if trial is None:
            with warnings.catch_warnings():  # GridSampler warns when a grid is exhausted and resampled
                warnings.simplefilter("ignore", UserWarning)
                trial = study.ask(fixed_distributions=self.distributions)
            trial.set_user_attr(ASK_INDEX, index)
        trial.set_user_attr(TUNE_TRIAL_ID, trial_id)
        self.assigned += 1
        self.handle.save()
        return {**self.fixed, **trial.params, OUTER_FOLD_KEY: fold}

    @staticmethod
    def _unclaimed(study: optuna.Study, index: int) -> optuna.trial.Trial | None:
        """The trial asked as number ``index`` by a driver killed before Tune saved it (Tune saves its
        trials and this searcher's count together, so after ``--resume`` it asks for that trial
        again): handed out once more instead of asking anew, so no trial stays RUNNING forever."""
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen.user_attrs.get(ASK_INDEX) == index and not frozen.intermediate_values:
                return optuna.trial.Trial(study, frozen._trial_id)
        return None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Nothing to do: the scheduler, which sees every end (pruned ones too), tells the study."""

    # Tune saves the searcher beside its experiment state and restores it on --resume; the
    # studies themselves are in the journal, so the state is just how many trials were handed out.
    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as handle:
            json.dump({"assigned": self.assigned}, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as handle:
            self.assigned = int(json.load(handle)["assigned"])
        self._reset()
