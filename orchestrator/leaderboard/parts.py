"""Where leaderboard files live under a storage root, and how each one is written whole.

    <storage>/leaderboard/<experiment>/<trial_id>/fold=<k>[-inner=<i>]-attempt=<a>.parquet   one fold row
    <storage>/trials/<experiment>/<trial_id>.parquet                             trial status
    <storage>/.leaderboard-cache/...                                             derived (footers, snapshots)

Writers never share a file, so any number of trials on any number of nodes append at once.
Every file goes through ``write_parquet``: local files are written to a temporary file,
fsynced and renamed into place; on object stores one PUT of the whole buffer is already
atomic. Either way a reader sees a whole file or none, and a killed writer leaves at most a
hidden ``.tmp-*`` file, which readers ignore.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from orchestrator.leaderboard.schema import SCHEMA, TRIAL_SCHEMA, FoldRow
from orchestrator.leaderboard.validation import validate_fold_row, validate_trial_row
from orchestrator.storage import StorageLocation, StorageWriteError, resolve_storage

__all__ = [
    "LeaderboardWriteError",
    "list_experiments",
    "part_path",
    "trial_status_path",
    "write_fold_row",
    "write_trial_status",
]

LEADERBOARD_DIR = "leaderboard"
TRIALS_DIR = "trials"
CACHE_DIR = ".leaderboard-cache"
SNAPSHOT_DIR = f"{CACHE_DIR}/snapshots"

LeaderboardWriteError = StorageWriteError  # a row could not be written (message names the destination)


def part_path(*, experiment: str, trial_id: str, fold: int, attempt: int, inner_fold: int | None = None) -> str:
    """Path of a fold row's part file, relative to the storage root."""
    inner = "" if inner_fold is None else f"-inner={inner_fold}"
    return f"{LEADERBOARD_DIR}/{experiment}/{trial_id}/fold={fold}{inner}-attempt={attempt}.parquet"


def trial_status_path(*, experiment: str, trial_id: str) -> str:
    """Path of a trial's status file, relative to the storage root."""
    return f"{TRIALS_DIR}/{experiment}/{trial_id}.parquet"


def write_parquet(
    location: StorageLocation, relative: str, table: pa.Table, *, what: str, row_group_size: int | None = None
) -> str:
    """Write ``table`` to ``relative`` so that readers see all of it or nothing; return its path.

    ``what`` names the file in the error raised when the write fails.
    """
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=row_group_size)
    return location.write_bytes(relative, sink.getvalue(), what=what)


def write_fold_row(storage: str | os.PathLike[str] | StorageLocation, row: FoldRow | Mapping[str, Any]) -> str:
    """Validate one fold row and write it as its own part file, atomically; return the file's path.

    ``schema_version`` and ``written_at`` are filled in when absent; every other column of
    ``SCHEMA`` must be given (None where nullable). Writing the same (trial, fold, attempt)
    again replaces the file as a whole, so a retried write never doubles a row.
    """
    clean = validate_fold_row(row)
    relative = part_path(
        experiment=clean["experiment"],
        trial_id=clean["trial_id"],
        fold=clean["fold"],
        attempt=clean["attempt"],
        inner_fold=clean.get("inner_fold"),
    )
    inner = "" if clean.get("inner_fold") is None else f" inner fold {clean['inner_fold']}"
    what = f"the leaderboard row of trial {clean['trial_id']} fold {clean['fold']}{inner} attempt {clean['attempt']}"
    return write_parquet(resolve_storage(storage), relative, pa.Table.from_pylist([clean], schema=SCHEMA), what=what)


def write_trial_status(
    storage: str | os.PathLike[str] | StorageLocation,
    *,
    experiment: str,
    trial_id: str,
    status: str,
    step: int,
    reason: str | None = None,
    params_json: str | Mapping[str, Any] | None = None,
) -> str:
    """Write (or atomically replace) a trial's status file; return its path.

    The driver writes it when a trial starts, finishes, is pruned, fails or is terminated.
    Fold rows stay immutable: ``runs`` reports a completed row of a pruned trial as ``pruned``.
    """
    clean = validate_trial_row(
        experiment=experiment, trial_id=trial_id, status=status, step=step, reason=reason, params_json=params_json
    )
    return write_parquet(
        resolve_storage(storage),
        trial_status_path(experiment=experiment, trial_id=trial_id),
        pa.Table.from_pylist([clean], schema=TRIAL_SCHEMA),
        what=f"the status of trial {trial_id}",
    )


def read_table(location: StorageLocation, path: str) -> pa.Table:
    """The whole Parquet file at ``path`` (inside the location's filesystem)."""
    with location.filesystem.open_input_file(path) as handle:
        return pq.read_table(handle)


def read_schema(location: StorageLocation, path: str) -> pa.Schema:
    """Only the schema (and key-value metadata) in the footer of the Parquet file at ``path``."""
    return pq.read_schema(path, filesystem=location.filesystem)


def list_files(location: StorageLocation, base: str) -> list[pafs.FileInfo]:
    """Every file below ``base`` (relative to the root); none when it does not exist."""
    selector = pafs.FileSelector(location.path(base), recursive=True, allow_not_found=True)
    return [info for info in location.filesystem.get_file_info(selector) if info.type == pafs.FileType.File]


def relative_key(location: StorageLocation, path: str) -> str:
    """``path`` (inside the filesystem) relative to the storage root: how caches and snapshots name files."""
    return path[len(location.root.rstrip("/")) :].lstrip("/")


def readable_path(location: StorageLocation, path: str) -> str:
    """How DuckDB (local) or the pyarrow reader (object stores) is given ``path``."""
    return path if location.is_local else location.shown(path)


def key_of_readable(location: StorageLocation, readable: str) -> str:
    """The inverse of ``readable_path``, as a key relative to the storage root."""
    root = location.display.rstrip("/")
    return readable[len(root) :].lstrip("/") if readable.startswith(root) else relative_key(location, readable)


def list_experiments(storage: str | os.PathLike[str] | StorageLocation) -> list[str]:
    """Names of the experiments that have a leaderboard folder under ``storage``."""
    location = resolve_storage(storage)
    selector = pafs.FileSelector(location.path(LEADERBOARD_DIR), recursive=False, allow_not_found=True)
    return sorted(
        info.base_name
        for info in location.filesystem.get_file_info(selector)
        if info.type == pafs.FileType.Directory and not info.base_name.startswith(".")
    )
