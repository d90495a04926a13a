"""One experiment name, one run: what a run of an experiment holds on a storage, and starting afresh.

Tune appends a second experiment state beside the first when a finished experiment's name is
used again, and the leaderboard then ranks every configuration twice. So ``sernas search``
refuses a name that already has results (``existing_run``) unless told ``--resume`` or
``--restart archive|remove`` (``archive_run`` / ``remove_run``). A run of experiment ``E`` is,
relative to the storage root (``orchestrator.storage``)::

    E/                          Tune state, checkpoints, prepared data (data/)
    E-cross-eval/               the Tune state of its cross-evaluation
    leaderboard/E/, trials/E/   its leaderboard rows and trial statuses
    .leaderboard-cache/snapshots/{leaderboard,trials}/E/   derived from those (rebuilt when needed)

Entries of ``E/`` that hold an input of the experiment (the demo generates its corpus in
``runs/demo/corpus``) are never moved nor deleted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.leaderboard.parts import LEADERBOARD_DIR, SNAPSHOT_DIR, TRIALS_DIR
from orchestrator.storage import ARCHIVE_DIR, RESTART_CHOICES, StorageLocation, resolve_storage

if TYPE_CHECKING:
    from orchestrator.config import ExperimentConfig

__all__ = ["RESTART_CHOICES", "ExistingRun", "archive_run", "existing_run", "experiment_inputs", "remove_run"]


@dataclass(frozen=True)
class ExistingRun:
    """What a run of ``experiment`` left on ``location``: the folders to move aside, described."""

    experiment: str
    location: StorageLocation
    moves: tuple[str, ...]  # paths relative to the root, in the order they are moved
    found: tuple[str, ...]  # one line per kind of result, for the user

    def __bool__(self) -> bool:
        return bool(self.found)

    def describe(self) -> str:
        return "; ".join(self.found)


def experiment_inputs(config: ExperimentConfig) -> tuple[Path, ...]:
    """The local paths ``config`` reads (corpus, manifest, feature cache): never part of a run."""
    data = config.data
    paths = [path for corpus in data.corpora() for path in (corpus.root, corpus.manifest)]
    return tuple(Path(path).absolute() for path in (*paths, data.cache_dir) if path is not None)


def _holds_input(location: StorageLocation, relative: str, inputs: Sequence[Path]) -> bool:
    if not location.is_local:
        return False
    entry = location.local_path(relative)
    return any(path == entry or entry in path.parents for path in inputs)


def existing_run(
    storage: str | os.PathLike[str] | StorageLocation, experiment: str, *, inputs: Sequence[Path] = ()
) -> ExistingRun:
    """The results ``experiment`` already has on ``storage`` (falsy when none: a fresh name).

    A folder ``<experiment>/`` holding only the prepared data (``data/``) or ``inputs`` is no
    result: the driver writes it before Tune starts.
    """
    from orchestrator.candidates import cross_eval_name

    location = resolve_storage(storage)
    moves: list[str] = []
    found: list[str] = []
    tune_entries = [
        f"{experiment}/{info.base_name}"
        for info in location.entries(experiment)
        if not _holds_input(location, f"{experiment}/{info.base_name}", inputs)
    ]
    if any(not entry.endswith("/data") for entry in tune_entries):
        found.append(f"Tune state in {location.shown(location.path(experiment))}")
        moves += tune_entries
    cross_eval = cross_eval_name(experiment)
    if location.entries(cross_eval):
        found.append(f"cross-eval Tune state in {location.shown(location.path(cross_eval))}")
        moves.append(cross_eval)
    for top, what in ((LEADERBOARD_DIR, "leaderboard part files"), (TRIALS_DIR, "trial status files")):
        count = location.count_files(top, experiment)
        if count:
            found.append(f"{count} {what} in {location.shown(location.path(top, experiment))}")
            moves.append(f"{top}/{experiment}")
    return ExistingRun(experiment=experiment, location=location, moves=tuple(moves), found=tuple(found))


def _tidy(run: ExistingRun) -> None:
    """Delete what the moved or deleted folders leave behind: the experiment's leaderboard
    snapshots (derived from them) and its Tune folder if nothing (no input) is left in it."""
    for top in (LEADERBOARD_DIR, TRIALS_DIR):
        run.location.delete(f"{SNAPSHOT_DIR}/{top}/{run.experiment}")
    if run.location.exists(run.experiment) and not run.location.entries(run.experiment):
        run.location.delete(run.experiment)


def archive_run(run: ExistingRun, *, now: float | None = None) -> str:
    """Move ``run`` aside to ``<storage>/_archive/<experiment>-<UTC time>/`` (same layout inside);
    return that folder as the user names it.

    Each folder moves in one rename, leaderboard rows first: a reader sees a folder in its old
    place or in the archive, never half of it. Object stores have no such rename, so there this
    raises ValueError (use ``remove_run`` or another experiment name).
    """
    location = run.location
    if not location.is_local:
        raise ValueError(
            f"--restart archive moves the run of {run.experiment!r} aside with a rename, which the object store "
            f"{location.uri} does not have; use --restart remove (deletes it) or another "
            "experiment name (--set name=...)."
        )
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    archive = f"{ARCHIVE_DIR}/{run.experiment}-{stamp}"
    suffix = 1
    while location.exists(archive):
        suffix += 1
        archive = f"{ARCHIVE_DIR}/{run.experiment}-{stamp}-{suffix}"
    for relative in sorted(run.moves, key=lambda path: not path.startswith((LEADERBOARD_DIR, TRIALS_DIR))):
        location.rename(relative, f"{archive}/{relative}")
    _tidy(run)
    return location.shown(location.path(archive))


def remove_run(run: ExistingRun) -> None:
    """Delete ``run``'s folders (every kind of storage), leaderboard rows first."""
    for relative in sorted(run.moves, key=lambda path: not path.startswith((LEADERBOARD_DIR, TRIALS_DIR))):
        run.location.delete(relative)
    _tidy(run)
