"""The experiment's Optuna study on disk: one journal file per experiment, one study in it.

The pruning scheduler (``orchestrator.pruning``) records every Tune trial there as an Optuna
trial: its sampled parameters, the values it reports (per-fold validation UA, or per-epoch
validation UA for the epoch pruners), its test UA as user attributes (never a value: test UA
chooses nothing) and its state (running, pruned, complete, failed). The journal outlives the
driver, so ``sernas search --resume`` reopens the study and the pruner decides with every trial
finished before the crash, and ``optuna-dashboard <journal>`` (or ``sernas dashboard``) shows
it. Where the journal lives is ``StorageLocation.study_journal``'s to say.

An Optuna journal (``optuna.storages.JournalStorage`` with its file backend) is an append-only
log of operations, appended to under a lock: the one file here not written by temp-and-rename,
by design. A driver killed in the middle of an append can leave a torn last line; ``open``
cuts it off (that operation was never acknowledged) before appending again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from orchestrator.storage import StorageLocation, resolve_storage
from trainers.atomic_io import write_atomically

__all__ = ["StudyHandle", "journal_storage"]


def journal_storage(path: str | os.PathLike[str]) -> JournalStorage:
    """The Optuna storage of a journal file (made empty if absent)."""
    return JournalStorage(JournalFileBackend(os.fspath(path)))


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
class StudyHandle:
    """How to reach an experiment's study: picklable (Tune pickles the scheduler holding it)
    and resolved only when used, so a restored scheduler reopens the same journal."""

    storage: str | StorageLocation  # the experiment's storage, as ``resolve_storage`` takes it
    experiment: str  # also the study's name

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

    def trials(self) -> int:
        """How many trials the experiment's study holds (0 when there is none; it never
        creates the file)."""
        path = self._local_journal()
        if path is None:
            return 0
        _cut_torn_tail(path)
        summaries = optuna.study.get_all_study_summaries(journal_storage(path), include_best_trial=False)
        return next((summary.n_trials for summary in summaries if summary.study_name == self.experiment), 0)

    def open(self, *, pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
        """The study (created when absent), maximising mean validation UA, with ``pruner``."""
        path = self._local_journal() or self.journal
        path.parent.mkdir(parents=True, exist_ok=True)
        _cut_torn_tail(path)
        return optuna.create_study(
            storage=journal_storage(path),
            study_name=self.experiment,
            direction="maximize",
            pruner=pruner,
            load_if_exists=True,
        )

    def save(self) -> None:
        """On an object store, upload the journal (whole, in one write) as
        ``<storage>/<experiment>/optuna.journal``; a local journal is already in place."""
        location = self.location
        if location.is_local or not self.journal.exists():
            return
        location.write_bytes(
            location.study_copy(self.experiment), self.journal.read_bytes(), what="the Optuna study journal"
        )
