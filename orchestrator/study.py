"""The experiment's Optuna studies on disk: one journal file per experiment, one study per outer fold.

Nested selection (docs/selection.md): the outer test fold is the unit of selection. Every search
trial belongs to one outer fold ``k``, and study ``<experiment>.fold<k>`` is the only record of
fold ``k``'s trials: the searcher (``orchestrator.nested``) asks it for each new trial's
parameters, the pruning scheduler (``orchestrator.pruning``) reports the trial's validation
figures to it and lets its pruner decide, and the trial's end is told to it as COMPLETE (the
mean validation UA over the trial's inner folds), PRUNED or FAIL. Test UA is stored as a user
attribute and read by nothing that chooses. A study sees only trials of its own outer fold, so no
sampler or pruner of fold ``k`` ever learns from a fold whose training or validation speakers
include fold ``k``'s test speakers.

The journal outlives the driver, so ``sernas search --resume`` reopens every study with the
trials finished before the crash, and ``optuna-dashboard <journal>`` (or ``sernas dashboard``)
shows them. Where the journal lives is ``StorageLocation.study_journal``'s to say.

An Optuna journal (``optuna.storages.JournalStorage`` with its file backend) is an append-only
log of operations, appended to under a lock: the one file here not written by temp-and-rename,
by design. A driver killed in the middle of an append can leave a torn last line; ``open``
cuts it off (that operation was never acknowledged) before appending again.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from orchestrator.storage import StorageLocation, resolve_storage
from trainers.atomic_io import write_atomically

__all__ = [
    "OUTER_FOLD_KEY",
    "OpenStudies",
    "TRIAL_STATUS",
    "TUNE_TRIAL_ID",
    "StudyHandle",
    "TrialOutcome",
    "journal_storage",
    "study_name",
    "trial_outcome",
]

OUTER_FOLD_KEY = "outer_fold"  # a search trial's Tune config: the outer fold whose study owns it
TUNE_TRIAL_ID = "tune_trial_id"  # user attribute: the Tune trial an Optuna trial stands for
TRIAL_STATUS = {
    "COMPLETE": "completed",
    "PRUNED": "pruned",
    "FAIL": "failed",
    "RUNNING": "running",
    "WAITING": "running",
}
"""An Optuna trial state's name as the leaderboard's trial status (``TRIAL_STATUSES``) says it."""
PRUNED_REASON = "pruned_reason"  # user attribute: why the pruner stopped the trial
MEAN_PARAMS = "mean_params"  # a trial's final result: mean trainable parameters over its inner folds


def journal_storage(path: str | os.PathLike[str]) -> JournalStorage:
    """The Optuna storage of a journal file (made empty if absent)."""
    return JournalStorage(JournalFileBackend(os.fspath(path)))


def study_name(experiment: str, fold: int) -> str:
    """The study of outer fold ``fold`` (its trials, sampler history and pruner history)."""
    return f"{experiment}.fold{int(fold)}"


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line without its newline (an append cut short by a kill), atomically."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    whole = data[: data.rfind(b"\n") + 1]
    write_atomically(path, lambda handle: handle.write(whole))


@dataclass(frozen=True)
class TrialOutcome:
    """How a finished Tune trial ends in its study: the state and, when COMPLETE, its values."""

    state: TrialState
    values: tuple[float, ...] | None = None


def trial_outcome(result: dict[str, Any] | None, *, error: bool, objective: str, multi_objective: bool) -> TrialOutcome:
    """The one rule for a trial that ended without being pruned (pruning is told where it is decided).

    COMPLETE only when every inner fold finished (its last fold report says ``folds_done ==
    n_folds``), with the mean validation UA over them (and, for two objectives, the mean
    parameter count); everything else, an error, a CUDA out-of-memory stop or a trial stopped
    before its last inner fold, is FAIL: a partial mean never counts as a full objective.
    """
    result = result or {}
    value = result.get(objective)
    done, planned = int(result.get("folds_done", 0)), int(result.get("n_folds", 0) or 0)
    if error or value is None or (isinstance(value, float) and math.isnan(value)) or planned < 1 or done < planned:
        return TrialOutcome(TrialState.FAIL)
    if multi_objective:
        return TrialOutcome(TrialState.COMPLETE, (float(value), float(result.get(MEAN_PARAMS, math.nan))))
    return TrialOutcome(TrialState.COMPLETE, (float(value),))


@dataclass(frozen=True)
class StudyHandle:
    """How to reach an experiment's studies: picklable (Tune pickles the searcher and the
    scheduler holding it) and resolved only when used, so a restored one reopens the same journal."""

    storage: str | StorageLocation  # the experiment's storage, as ``resolve_storage`` takes it
    experiment: str

    @property
    def location(self) -> StorageLocation:
        return resolve_storage(self.storage)

    @property
    def journal(self) -> Path:
        """The local journal file (see ``StorageLocation.study_journal``)."""
        return self.location.study_journal(self.experiment)

    def _local_journal(self) -> Path | None:
        """The local journal, fetched first from an object store's copy when this driver lacks
        it (a resumed job on another machine); None when there is none anywhere."""
        path = self.journal
        if path.exists():
            return path
        location = self.location
        if location.is_local or not location.is_file(location.study_copy(self.experiment)):
            return None
        data = location.read_bytes(location.study_copy(self.experiment))
        write_atomically(path, lambda handle: handle.write(data))
        return path

    def _mine(self, name: str) -> bool:
        return name == self.experiment or name.startswith(f"{self.experiment}.fold")

    def trials(self) -> int:
        """How many trials the experiment's studies hold together (0 when there is none; it
        never creates the file)."""
        path = self._local_journal()
        if path is None:
            return 0
        # No cut here or in studies(): a reader (sernas dashboard, a test polling a live run) may
        # run beside a driver that is appending, and Optuna's reader skips an unfinished last line.
        summaries = optuna.study.get_all_study_summaries(journal_storage(path), include_best_trial=False)
        return sum(summary.n_trials for summary in summaries if self._mine(summary.study_name))

    def storage_for_use(self) -> JournalStorage:
        """The journal storage, created when absent (after cutting a torn tail)."""
        path = self._local_journal() or self.journal
        path.parent.mkdir(parents=True, exist_ok=True)
        _cut_torn_tail(path)
        return journal_storage(path)

    def open(
        self,
        *,
        fold: int,
        storage: JournalStorage | None = None,
        pruner: optuna.pruners.BasePruner | None = None,
        sampler: optuna.samplers.BaseSampler | None = None,
        multi_objective: bool = False,
    ) -> optuna.Study:
        """Outer fold ``fold``'s study (created when absent): maximise mean validation UA (and,
        with ``multi_objective``, minimise parameters), deciding with ``pruner``, proposing with ``sampler``."""
        return optuna.create_study(
            storage=storage or self.storage_for_use(),
            study_name=study_name(self.experiment, fold),
            directions=["maximize", "minimize"] if multi_objective else ["maximize"],
            pruner=pruner,
            sampler=sampler,
            load_if_exists=True,
        )

    def studies(self) -> dict[int, optuna.Study]:
        """Every outer fold's study in the journal, by fold (read-only use: leaderboard, CLI)."""
        path = self._local_journal()
        if path is None:
            return {}
        storage = journal_storage(path)  # read-only: a torn tail is left to the next writer (see trials)
        prefix = f"{self.experiment}.fold"
        found = {}
        for summary in optuna.study.get_all_study_summaries(storage, include_best_trial=False):
            name = summary.study_name
            if name.startswith(prefix) and name[len(prefix) :].isdigit():
                found[int(name[len(prefix) :])] = optuna.load_study(study_name=name, storage=storage)
        return dict(sorted(found.items()))

    def save(self) -> None:
        """On an object store, upload the journal (whole, in one write) as
        ``<storage>/<experiment>/optuna.journal``; a local journal is already in place."""
        location = self.location
        if location.is_local or not self.journal.exists():
            return
        location.write_bytes(
            location.study_copy(self.experiment), self.journal.read_bytes(), what="the Optuna study journal"
        )


class OpenStudies:
    """The outer folds' studies of one handle, each opened once per process over one journal
    storage (never pickled: a searcher or scheduler rebuilt by ``--resume`` opens them anew).
    ``sampler_for(fold, trials_before)`` gives a study its sampler once it is open."""

    def __init__(
        self,
        handle: StudyHandle,
        *,
        pruner: optuna.pruners.BasePruner | None = None,
        multi_objective: bool = False,
        sampler_for: Callable[[int, int], optuna.samplers.BaseSampler] | None = None,
    ) -> None:
        self.handle, self.pruner, self.multi_objective, self.sampler_for = handle, pruner, multi_objective, sampler_for
        self._storage: JournalStorage | None = None
        self._studies: dict[int, optuna.Study] = {}

    def __call__(self, fold: int) -> optuna.Study:
        if fold not in self._studies:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            if self._storage is None:
                self._storage = self.handle.storage_for_use()
            study = self.handle.open(
                fold=fold, storage=self._storage, pruner=self.pruner, multi_objective=self.multi_objective
            )
            if self.sampler_for is not None:
                study.sampler = self.sampler_for(fold, len(study.get_trials(deepcopy=False)))
            self._studies[fold] = study
        return self._studies[fold]


def find_trial(study: optuna.Study, tune_trial_id: str) -> FrozenTrial | None:
    """The newest Optuna trial of ``study`` standing for Tune trial ``tune_trial_id`` (a trial
    rerun by ``--resume`` after it failed gets a new one)."""
    found = None
    for frozen in study.get_trials(deepcopy=False):
        if frozen.user_attrs.get(TUNE_TRIAL_ID) == tune_trial_id:
            found = frozen
    return found


def recorded_end(handle: StudyHandle, *, fold: int, tune_trial_id: str) -> tuple[TrialState, str | None] | None:
    """How outer fold ``fold``'s study recorded Tune trial ``tune_trial_id`` (state, pruning reason);
    None when it holds no such trial."""
    studies = handle.studies()
    if fold not in studies:
        return None
    frozen = find_trial(studies[fold], tune_trial_id)
    return None if frozen is None else (frozen.state, frozen.user_attrs.get(PRUNED_REASON))
