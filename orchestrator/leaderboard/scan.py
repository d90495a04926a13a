"""Listing a leaderboard: the good part files to query, the damaged ones to report, the snapshots.

``scan_parts`` lists the part files, trial status files and prediction files, checks each one's footer (cached,
see ``footers``) and finds the newest snapshot of each experiment; a file that snapshot holds
unchanged is served from it, every other good file is read directly.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

import pyarrow as pa
import pyarrow.fs as pafs

from orchestrator.leaderboard.footers import FooterCache, Verdict, check_footer, read_cache, write_cache
from orchestrator.leaderboard.parts import (
    LEADERBOARD_DIR,
    SNAPSHOT_DIR,
    TRIALS_DIR,
    list_files,
    read_schema,
    readable_path,
    relative_key,
)
from orchestrator.leaderboard.predictions import PREDICTION_SCHEMA, PREDICTIONS_DIR
from orchestrator.leaderboard.schema import SCHEMA, TRIAL_SCHEMA
from orchestrator.names import check_name
from orchestrator.storage import StorageLocation, resolve_storage

__all__ = ["DamagedFile", "PartScan", "Snapshot", "scan_parts"]

COVERS_KEY = b"sernas.snapshot.covers"  # in a snapshot's metadata: source key -> [size, mtime_ns]


class DamagedFile(NamedTuple):
    path: str
    reason: str


@dataclass(frozen=True)
class Snapshot:
    """A snapshot file that a scan reads instead of the files it ``covers``."""

    path: str  # as readers open it: a local path, or the URI shown for object stores
    experiment: str
    entries: Mapping[str, tuple[int, int]] = field(repr=False)  # every source it holds -> (size, mtime_ns)
    covers: frozenset[str] = field(repr=False, default=frozenset())  # scanned files it serves, unchanged
    stale: tuple[str, ...] = ()  # sources whose rows must be skipped: their files changed or are gone


@dataclass(frozen=True)
class PartScan:
    """What ``scan_parts`` found: good files to query, damaged ones (skipped), and its cost."""

    storage: str
    parts: tuple[str, ...]  # good leaderboard part files, sorted (snapshotted ones included)
    trial_files: tuple[str, ...]  # good trial status files, sorted
    damaged: tuple[DamagedFile, ...]  # unreadable or wrong-schema files: skipped, never fatal
    temporary: tuple[str, ...] = ()  # leftovers of killed writers (.tmp-*); ignored, safe to delete
    parts_uniform: bool = True  # every good part file has the same columns and types
    trials_uniform: bool = True
    footers_read: int = 0
    footers_cached: int = 0
    seconds: float = 0.0
    snapshots: tuple[Snapshot, ...] = ()  # serve the rows of the part files they cover
    trial_snapshots: tuple[Snapshot, ...] = ()
    prediction_files: tuple[str, ...] = ()  # good per-utterance prediction files (never snapshotted)
    predictions_uniform: bool = True
    file_stats: Mapping[str, tuple[str, int, int]] = field(default_factory=dict, repr=False)  # path -> key, size, mtime

    @property
    def unsnapshotted(self) -> int:
        """Good files a query must open one by one (not served by a snapshot)."""
        covered = sum(len(s.covers) for s in (*self.snapshots, *self.trial_snapshots))
        return len(self.parts) + len(self.trial_files) - covered

    def damage_report(self) -> list[str]:
        """One line per damaged file, for a CLI to print."""
        return [f"skipped damaged file {item.path}: {item.reason}" for item in self.damaged]


def _check_root(location: StorageLocation) -> None:
    info = location.filesystem.get_file_info(location.root or "/")
    if location.is_local and info.type != pafs.FileType.Directory:
        raise FileNotFoundError(
            f"no leaderboard storage at {location.shown(location.root)}: "
            f"{'it is not a directory' if info.type == pafs.FileType.File else 'it does not exist'}."
        )


def _latest_snapshots(
    location: StorageLocation, top: str, experiment: str | None
) -> list[tuple[str, str, dict[str, tuple[int, int]]]]:
    """The newest readable snapshot of each experiment: (path, experiment, entries)."""
    base = f"{SNAPSHOT_DIR}/{top}" + ("" if experiment is None else f"/{experiment}")
    newest: dict[str, list[pafs.FileInfo]] = {}
    for info in list_files(location, base):
        if info.base_name.endswith(".parquet") and not info.base_name.startswith("."):
            newest.setdefault(info.path.rsplit("/", 2)[-2], []).append(info)
    found = []
    for name, infos in sorted(newest.items()):
        for info in sorted(infos, key=lambda item: item.base_name, reverse=True):  # names start with a timestamp
            try:
                metadata = read_schema(location, info.path).metadata or {}
                entries = {
                    key: (int(size), int(mtime)) for key, (size, mtime) in json.loads(metadata[COVERS_KEY]).items()
                }
            except (OSError, pa.ArrowException, KeyError, ValueError, TypeError) as error:
                warnings.warn(
                    f"ignoring the leaderboard snapshot {location.shown(info.path)} ({error}); its rows are "
                    "read from the part files instead.",
                    RuntimeWarning,
                    stacklevel=3,
                )
                continue
            found.append((info.path, name, entries))
            break
    return found


class _KindScan(NamedTuple):
    good: list[str]
    stats: dict[str, tuple[str, int, int]]
    fingerprints: set[str]
    damaged: list[DamagedFile]
    temporary: list[str]
    snapshots: list[Snapshot]
    read: int
    cached: int


def _scan_kind(
    location: StorageLocation,
    top: str,
    expected: pa.Schema,
    experiment: str | None,
    cache: Mapping[str, tuple[int, int, str | None, str]],
    updated: FooterCache,
) -> _KindScan:
    """Scan the files of one kind (fold rows or trial statuses); ``updated`` gets new footer verdicts."""
    base = top if experiment is None else f"{top}/{experiment}"
    listed: list[tuple[pafs.FileInfo, str]] = []
    temporary: list[str] = []
    for info in list_files(location, base):
        if info.base_name.startswith(".tmp-"):
            temporary.append(location.shown(info.path))
        elif info.base_name.endswith(".parquet") and not info.base_name.startswith("."):
            listed.append((info, relative_key(location, info.path)))
    stat = {key: (info.size, info.mtime_ns if info.mtime_ns is not None else -1) for info, key in listed}

    snapshot_of: dict[str, int] = {}  # source key -> index of the snapshot holding it unchanged
    latest = _latest_snapshots(location, top, experiment)
    for index, (_, _, entries) in enumerate(latest):
        for key, size_mtime in entries.items():
            if stat.get(key) == size_mtime:
                snapshot_of[key] = index
    covers: list[set[str]] = [set() for _ in latest]

    todo: list[tuple[pafs.FileInfo, str]] = []
    verdicts: dict[str, Verdict] = {}
    cached = 0
    for info, key in listed:
        if key in snapshot_of:  # checked when it was compacted, unchanged since
            verdicts[key] = Verdict(None, "snapshot", False)
            continue
        hit = cache.get(key)
        if hit is not None and (hit[0], hit[1]) == stat[key]:
            verdicts[key] = Verdict(hit[2], hit[3], True)
            cached += 1
        else:
            todo.append((info, key))
    memo: dict[pa.Schema, tuple[str | None, str]] = {}
    if location.is_local:  # footers of local files: sequential reads beat a thread pool here
        checked = [check_footer(location, info.path, expected, memo) for info, _ in todo]
    else:  # object stores: latency-bound, so overlap the requests
        with ThreadPoolExecutor(max_workers=16) as pool:
            checked = list(pool.map(lambda item: check_footer(location, item[0].path, expected, memo), todo))
    for (_info, key), verdict in zip(todo, checked):
        verdicts[key] = verdict
        if verdict.cacheable:
            updated[key] = (*stat[key], verdict.reason, verdict.fingerprint)
    scanned_prefix = base + "/"
    for key in [k for k in updated if k.startswith(scanned_prefix) and k not in stat]:
        del updated[key]  # files that are gone

    good: list[str] = []
    stats: dict[str, tuple[str, int, int]] = {}
    fingerprints: set[str] = set()
    damaged: list[DamagedFile] = []
    for info, key in sorted(listed, key=lambda item: item[1]):
        verdict = verdicts[key]
        path = readable_path(location, info.path)
        if verdict.reason is None:
            good.append(path)
            stats[path] = (key, *stat[key])
            if key in snapshot_of:
                covers[snapshot_of[key]].add(path)
            else:
                fingerprints.add(verdict.fingerprint)
        else:
            damaged.append(DamagedFile(location.shown(info.path), verdict.reason))
    snapshots = []
    for (path, name, entries), covered in zip(latest, covers):
        stale = tuple(sorted(key for key, size_mtime in entries.items() if stat.get(key) != size_mtime))
        if len(stale) > len(covered):  # mostly outdated: reading its files directly is simpler and no slower
            continue
        snapshots.append(
            Snapshot(
                path=readable_path(location, path),
                experiment=name,
                entries=entries,
                covers=frozenset(covered),
                stale=stale,
            )
        )
    return _KindScan(good, stats, fingerprints, damaged, temporary, snapshots, len(todo), cached)


def scan_parts(
    storage: str | os.PathLike[str] | StorageLocation, *, experiment: str | None = None, use_cache: bool = True
) -> PartScan:
    """List the leaderboard part files and trial status files and check each one's footer.

    A file that is not readable Parquet or lacks the expected columns goes to ``damaged`` with
    the reason and is skipped. Footer verdicts are cached by (path, size, mtime_ns) in
    ``<storage>/.leaderboard-cache/footers.parquet`` (written atomically), so a rescan of an
    unchanged leaderboard only lists files. Files held unchanged by the newest snapshot of
    their experiment are not checked again and are listed in that ``Snapshot``'s ``covers``.
    """
    started = time.perf_counter()
    location = resolve_storage(storage)
    _check_root(location)
    if experiment is not None:
        check_name("experiment", experiment)
    cache = read_cache(location) if use_cache else {}
    updated = dict(cache)
    rows = _scan_kind(location, LEADERBOARD_DIR, SCHEMA, experiment, cache, updated)
    trials = _scan_kind(location, TRIALS_DIR, TRIAL_SCHEMA, experiment, cache, updated)
    predictions = _scan_kind(location, PREDICTIONS_DIR, PREDICTION_SCHEMA, experiment, cache, updated)
    if use_cache and updated != cache:
        write_cache(location, updated)
    return PartScan(
        storage=location.shown(location.root),
        parts=tuple(rows.good),
        trial_files=tuple(trials.good),
        damaged=tuple(rows.damaged + trials.damaged + predictions.damaged),
        temporary=tuple(sorted(rows.temporary + trials.temporary + predictions.temporary)),
        parts_uniform=len(rows.fingerprints) <= 1,
        trials_uniform=len(trials.fingerprints) <= 1,
        footers_read=rows.read + trials.read + predictions.read,
        footers_cached=rows.cached + trials.cached + predictions.cached,
        seconds=time.perf_counter() - started,
        snapshots=tuple(rows.snapshots),
        trial_snapshots=tuple(trials.snapshots),
        prediction_files=tuple(predictions.good),
        predictions_uniform=len(predictions.fingerprints) <= 1,
        file_stats={**rows.stats, **trials.stats},
    )
