"""Compaction: an experiment's part files copied into one snapshot file, a cache that cannot lie.

Opening thousands of small files costs DuckDB far more than reading their rows, so ``compact``
copies the rows of an experiment's part files into one snapshot file that records which files
(by path, size and mtime) it holds. The part files stay the truth: a reader takes from the
snapshot only the rows of files that still exist unchanged, and reads every other file itself.
A snapshot can therefore never hide, double or resurrect a row, and deleting it only costs
speed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass

import duckdb

from orchestrator.leaderboard.parts import LEADERBOARD_DIR, SNAPSHOT_DIR, TRIALS_DIR, list_files, write_parquet
from orchestrator.leaderboard.scan import COVERS_KEY, PartScan, scan_parts
from orchestrator.leaderboard.schema import METADATA_KEY, RENAMED_COLUMNS, SCHEMA_VERSION
from orchestrator.leaderboard.sources import rows_query
from orchestrator.storage import StorageLocation, resolve_storage

__all__ = ["SNAPSHOT_GRACE_SECONDS", "Compaction", "compact"]

SNAPSHOT_GRACE_SECONDS = 600.0  # superseded snapshots are deleted once older than this (open readers may use them)


@dataclass(frozen=True)
class Compaction:
    """What ``compact`` did."""

    written: tuple[str, ...]  # new snapshot files
    files: int  # part and status files newly taken into a snapshot
    rows: int  # rows in the new snapshots
    removed: tuple[str, ...]  # superseded snapshots deleted
    seconds: float


def compact(
    storage: str | os.PathLike[str] | StorageLocation,
    *,
    experiment: str | None = None,
    grace_seconds: float = SNAPSHOT_GRACE_SECONDS,
) -> Compaction:
    """Fold every experiment's files that no snapshot holds yet into a new snapshot per experiment.

    The new snapshot holds the previous one's still-valid rows plus the new files' rows, and
    records each source file's (size, mtime); it is written atomically under a new name, so
    readers see the old snapshot or the new one. Superseded snapshots older than
    ``grace_seconds`` are deleted (a connection opened earlier may still read them). Part files
    are never touched. Safe to run while trials write rows and while others query.
    """
    started = time.perf_counter()
    location = resolve_storage(storage)
    done = compact_scanned(location, scan_parts(location, experiment=experiment), grace_seconds=grace_seconds)
    return dataclasses.replace(done, seconds=time.perf_counter() - started)  # the scan included


def compact_scanned(location: StorageLocation, scan: PartScan, *, grace_seconds: float) -> Compaction:
    """``compact`` over the files of a scan just made (``connect`` has one already)."""
    started = time.perf_counter()
    written: list[str] = []
    removed: list[str] = []
    files_taken = rows = 0
    for top, files, snapshots in (
        (LEADERBOARD_DIR, scan.parts, scan.snapshots),
        (TRIALS_DIR, scan.trial_files, scan.trial_snapshots),
    ):
        by_experiment: dict[str, list[str]] = {}
        for path in files:
            by_experiment.setdefault(scan.file_stats[path][0].split("/")[1], []).append(path)
        current = {snapshot.experiment: snapshot for snapshot in snapshots}
        for name in sorted(set(by_experiment) | set(current)):
            snapshot = current.get(name)
            new = [path for path in by_experiment.get(name, []) if snapshot is None or path not in snapshot.covers]
            if not new and (snapshot is None or not snapshot.stale):
                continue
            with duckdb.connect() as con:
                con.execute("SET TimeZone = 'UTC'")
                with rows_query(
                    con,
                    location,
                    files=new,
                    snapshots=[snapshot] if snapshot else [],
                    uniform=False,
                    sources=True,
                    renamed=RENAMED_COLUMNS if top == LEADERBOARD_DIR else {},  # snapshots hold current names
                ) as query:
                    table = con.sql(query).to_arrow_table()
            stale = set(snapshot.stale) if snapshot is not None else set()
            entries = {
                key: list(size_mtime)
                for key, size_mtime in (snapshot.entries if snapshot else {}).items()
                if key not in stale
            }
            entries.update({scan.file_stats[path][0]: list(scan.file_stats[path][1:]) for path in new})
            table = table.replace_schema_metadata(
                {
                    COVERS_KEY: json.dumps(entries, separators=(",", ":")).encode(),
                    METADATA_KEY: str(SCHEMA_VERSION).encode(),
                }
            )
            relative = f"{SNAPSHOT_DIR}/{top}/{name}/{time.time_ns():020d}-{os.urandom(4).hex()}.parquet"
            what = f"a leaderboard snapshot of {name}"
            written.append(write_parquet(location, relative, table, what=what, row_group_size=131_072))
            files_taken += len(new)
            rows += table.num_rows
            removed += _remove_superseded(
                location, f"{SNAPSHOT_DIR}/{top}/{name}", keep=relative, grace_seconds=grace_seconds
            )
    return Compaction(
        written=tuple(written),
        files=files_taken,
        rows=rows,
        removed=tuple(removed),
        seconds=time.perf_counter() - started,
    )


def _remove_superseded(location: StorageLocation, folder: str, *, keep: str, grace_seconds: float) -> list[str]:
    keep_name = keep.rsplit("/", 1)[-1]
    cutoff = time.time_ns() - int(grace_seconds * 1e9)
    removed = []
    for info in list_files(location, folder):
        stale_temp = info.base_name.startswith(".tmp-")
        if info.base_name == keep_name or info.base_name > keep_name and not stale_temp:
            continue  # ours, or a newer one from a concurrent compaction
        if info.mtime_ns is not None and info.mtime_ns > cutoff:
            continue  # a reader that connected a moment ago may still read it
        try:
            location.filesystem.delete_file(info.path)
            removed.append(location.shown(info.path))
        except OSError:  # already gone (another compaction) or not ours to delete: harmless
            pass
    return removed
