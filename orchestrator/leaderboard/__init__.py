"""The leaderboard: one immutable Parquet part file per (trial, fold, attempt), read with DuckDB.

Layout under a storage root (a local path or a URI that ``pyarrow.fs`` understands)::

    <storage>/leaderboard/<experiment>/<trial_id>/fold=<k>-attempt=<a>.parquet   one fold row
    <storage>/trials/<experiment>/<trial_id>.parquet                             trial status
    <storage>/.leaderboard-cache/footers.parquet                                 footer-check cache
    <storage>/.leaderboard-cache/snapshots/<kind>/<experiment>/<seq>-<id>.parquet compacted rows (a cache)

Writers never share a file, so any number of trials on any number of nodes append at once.
Local files are written to a temporary file, fsynced and renamed into place; on object stores
one PUT of the whole buffer is already atomic. Either way a reader sees a whole part file or
none, and a killed writer leaves at most a hidden ``.tmp-*`` file, which readers ignore.

Readers (``connect``) list the part files, check each file's Parquet footer (cached by path,
size and mtime, so 10,000 files cost one listing when nothing changed), report damaged files
by name and build DuckDB views over the good ones: ``fold_rows``, ``trials``, ``runs``,
``genotypes``, ``trial_scores`` and ``config_scores`` (see docs/leaderboard.md).

Opening thousands of small files costs DuckDB far more than reading their rows, so
``compact`` copies the rows of an experiment's part files into one snapshot file that records
which files (by path, size and mtime) it holds. The part files stay the truth: a reader takes
from the snapshot only the rows of files that still exist unchanged, and reads every other
file itself. A snapshot is therefore a cache that can never hide, double or resurrect a row,
and deleting it only costs speed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from orchestrator.names import check_name
from orchestrator.storage import StorageLocation, StorageWriteError, resolve_storage

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "TRIAL_SCHEMA",
    "COLUMN_DOCS",
    "FOLD_STATUSES",
    "TRIAL_STATUSES",
    "AUTO_COMPACT_FILES",
    "Compaction",
    "DamagedFile",
    "Leaderboard",
    "LeaderboardWriteError",
    "PartScan",
    "Snapshot",
    "StorageLocation",
    "SUMMARY_VIEWS",
    "compact",
    "connect",
    "list_experiments",
    "part_path",
    "resolve_storage",
    "scan_parts",
    "summary_sql",
    "top_genotypes",
    "trial_status_path",
    "write_fold_row",
    "write_trial_status",
]

SCHEMA_VERSION = 1
FOLD_STATUSES = ("completed", "failed")
TRIAL_STATUSES = ("running", "completed", "pruned", "failed", "terminated")
LEADERBOARD_DIR = "leaderboard"
TRIALS_DIR = "trials"
CACHE_DIR = ".leaderboard-cache"
SNAPSHOT_DIR = f"{CACHE_DIR}/snapshots"
SOURCE_COLUMN = "_source"  # in snapshot rows: the part file (relative to the storage root) a row came from
AUTO_COMPACT_FILES = 1000  # connect() compacts an experiment with at least this many files outside a snapshot
SNAPSHOT_GRACE_SECONDS = 600.0  # superseded snapshots are deleted once older than this (open readers may use them)
_COVERS_KEY = b"sernas.snapshot.covers"
_METADATA_KEY = b"sernas.leaderboard.schema_version"


class _Column(NamedTuple):
    name: str
    type: pa.DataType
    required: bool  # never null
    doc: str


_FOLD_COLUMNS = (
    _Column("schema_version", pa.int32(), True, "version of this schema the row was written with"),
    _Column("experiment", pa.string(), True, "experiment name"),
    _Column("trial_id", pa.string(), True, "Ray Tune trial id: one point of the search space"),
    _Column("fold", pa.int32(), True, "speaker-independent fold, numbered from 1"),
    _Column("n_folds", pa.int32(), True, "number of folds the experiment runs"),
    _Column("attempt", pa.int32(), True, "attempt of this (trial, fold), from 0; a rerun writes a new attempt"),
    _Column("status", pa.string(), True, "completed | failed (runs reports pruned from the trial status)"),
    _Column("written_at", pa.timestamp("us", tz="UTC"), True, "when the row was written, UTC, microseconds"),
    _Column("node_id", pa.string(), True, "Ray node id ('local' outside Ray)"),
    _Column("hostname", pa.string(), True, "host that ran the fold"),
    _Column("seed", pa.int64(), True, "the trial's random seed"),
    _Column("params_json", pa.string(), True, "the trial's sampled parameters, canonical JSON object"),
    _Column("layers", pa.int32(), False, "cells in the network"),
    _Column("nodes", pa.int32(), False, "intermediate nodes per cell"),
    _Column("init_channels", pa.int32(), False, "channels of the first cell"),
    _Column("lstm_hidden", pa.int32(), False, "LSTM hidden units"),
    _Column("darts_order", pa.string(), False, "DARTS order: first | second"),
    _Column("pc_k", pa.int32(), False, "PC-DARTS partial-channel factor K (1 = all channels)"),
    _Column("weights_lr", pa.float64(), False, "learning rate of the network weights"),
    _Column("search_epochs", pa.int32(), False, "configured search epochs"),
    _Column("eval_epochs", pa.int32(), False, "configured evaluation epochs"),
    _Column("dataset", pa.string(), True, "corpus: iemocap, msp-improv, synthetic, ..."),
    _Column("feature_preset", pa.string(), True, "feature preset, e.g. paper-mfcc"),
    _Column("fold_scheme", pa.string(), True, "loso | speaker-pairs"),
    _Column("classes", pa.string(), True, "JSON list of class names in label-index order"),
    _Column("genotype", pa.string(), False, "canonical Genotype JSON; null for baseline models and failed rows"),
    _Column("genotype_hash", pa.string(), False, "12-hex hash of the genotype JSON, or a model name ('baseline')"),
    _Column("ua", pa.float64(), False, "test unweighted accuracy (mean per-class recall), 0..1"),
    _Column("wa", pa.float64(), False, "test weighted accuracy (plain accuracy), 0..1"),
    _Column("macro_f1", pa.float64(), False, "test macro-averaged F1, 0..1"),
    _Column("confusion", pa.string(), False, "JSON test confusion matrix (rows true, columns predicted), counts"),
    _Column("test_utterances", pa.int32(), False, "test utterances evaluated (each exactly once)"),
    _Column("valid_ua", pa.float64(), False, "UA on the validation speakers at the selected epoch, 0..1"),
    _Column("best_epoch", pa.int32(), False, "evaluation epoch selected on the validation speakers"),
    _Column("params", pa.int64(), False, "trainable parameters of the evaluated network"),
    _Column("search_seconds", pa.float64(), False, "wall-clock seconds of the DARTS search (0 without one)"),
    _Column("eval_seconds", pa.float64(), False, "wall-clock seconds of the evaluation training"),
    _Column("search_epochs_run", pa.int32(), False, "search epochs actually run (fewer if stopped early)"),
    _Column("device", pa.string(), False, "torch device the fold ran on: cpu, cuda:0, ..."),
    _Column("error", pa.string(), False, "error message; null unless status = failed"),
)
_TRIAL_COLUMNS = (
    _Column("schema_version", pa.int32(), True, "version of this schema the row was written with"),
    _Column("experiment", pa.string(), True, "experiment name"),
    _Column("trial_id", pa.string(), True, "Ray Tune trial id"),
    _Column("status", pa.string(), True, "running | completed | pruned | failed | terminated"),
    _Column("step", pa.int64(), True, "last step the trial reported (the pruner's step when pruned)"),
    _Column("reason", pa.string(), False, "why the trial was pruned, failed or terminated"),
    _Column("params_json", pa.string(), False, "the trial's sampled parameters, canonical JSON object"),
    _Column("updated_at", pa.timestamp("us", tz="UTC"), True, "when this status was written, UTC"),
)


def _schema(columns: Sequence[_Column]) -> pa.Schema:
    return pa.schema(
        [pa.field(c.name, c.type, nullable=not c.required) for c in columns],
        metadata={_METADATA_KEY: str(SCHEMA_VERSION).encode()},
    )


SCHEMA = _schema(_FOLD_COLUMNS)
"""One leaderboard row per (trial, fold, attempt)."""
TRIAL_SCHEMA = _schema(_TRIAL_COLUMNS)
"""One status row per trial."""
COLUMN_DOCS = {"fold_rows": {c.name: c.doc for c in _FOLD_COLUMNS}, "trials": {c.name: c.doc for c in _TRIAL_COLUMNS}}
_JSON_COLUMNS = {"params_json": dict, "genotype": dict, "classes": list, "confusion": list}
_COMPLETED_NEEDS = ("genotype_hash", "ua", "wa", "macro_f1")
_CONFIG_COLUMNS = (
    "layers",
    "nodes",
    "init_channels",
    "lstm_hidden",
    "darts_order",
    "pc_k",
    "weights_lr",
    "search_epochs",
    "eval_epochs",
)


LeaderboardWriteError = StorageWriteError  # a row could not be written (message names the destination)


class DamagedFile(NamedTuple):
    path: str
    reason: str


def _check_name(what: str, value: Any) -> str:
    return check_name(what, value)


def part_path(*, experiment: str, trial_id: str, fold: int, attempt: int) -> str:
    """Path of a fold row's part file, relative to the storage root."""
    return f"{LEADERBOARD_DIR}/{experiment}/{trial_id}/fold={fold}-attempt={attempt}.parquet"


def trial_status_path(*, experiment: str, trial_id: str) -> str:
    """Path of a trial's status file, relative to the storage root."""
    return f"{TRIALS_DIR}/{experiment}/{trial_id}.parquet"


def _put(location: StorageLocation, relative: str, data: pa.Buffer, *, what: str) -> str:
    """Write ``data`` to ``relative`` so that readers see all of it or nothing; return its path."""
    return location.write_bytes(relative, data, what=what)


def _parquet_bytes(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


# ------------------------------------------------------------------------------------ validation
def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _check_value(column: _Column, value: Any) -> Any:
    """Return ``value`` as stored in ``column`` or raise ValueError naming the column."""
    if value is None:
        if column.required:
            raise ValueError(f"column {column.name!r} must not be null.")
        return None
    kind = column.type
    if pa.types.is_integer(kind):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ValueError(
                f"column {column.name!r} must be an integer ({kind}), but got {type(value).__name__} {value!r}."
            )
        value = int(value)
        bits = kind.bit_width - 1
        if not -(2**bits) <= value < 2**bits:
            raise ValueError(f"column {column.name!r} must fit in {kind}, but got {value}.")
        return value
    if pa.types.is_floating(kind):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(
                f"column {column.name!r} must be a number ({kind}), but got {type(value).__name__} {value!r}."
            )
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(
                f"column {column.name!r} must be a finite number (use None when unknown), but got {value}."
            )
        return value
    if pa.types.is_timestamp(kind):
        if not isinstance(value, datetime):
            raise ValueError(
                f"column {column.name!r} must be a timezone-aware datetime, but got {type(value).__name__} {value!r}."
            )
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"column {column.name!r} must be a timezone-aware datetime, but got the naive {value}.")
        return value.astimezone(UTC)
    # strings; JSON columns also take the parsed value and store it canonically
    expected_json = _JSON_COLUMNS.get(column.name)
    if expected_json is not None:
        parsed = value
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(f"column {column.name!r} must be JSON, but got {value[:80]!r}: {error}.") from None
        if not isinstance(parsed, expected_json):
            raise ValueError(
                f"column {column.name!r} must be a JSON {'object' if expected_json is dict else 'list'}"
                f" (or a {expected_json.__name__}), but got {type(parsed).__name__} {value!r:.80}."
            )
        try:
            return _canonical_json(parsed)
        except (TypeError, ValueError) as error:
            raise ValueError(f"column {column.name!r} holds a value JSON cannot store: {error}.") from None
    if not isinstance(value, str):
        raise ValueError(f"column {column.name!r} must be a string, but got {type(value).__name__} {value!r}.")
    return value


def _validate(columns: Sequence[_Column], row: Mapping[str, Any], *, defaults: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise ValueError(f"a leaderboard row must be a mapping of column -> value, but got {type(row).__name__}.")
    names = [c.name for c in columns]
    unknown = [key for key in row if key not in names]
    if unknown:
        raise ValueError(f"unknown column(s) {unknown}; schema version {SCHEMA_VERSION} has: {', '.join(names)}.")
    full = {**defaults, **row}
    missing = [name for name in names if name not in full]
    if missing:
        raise ValueError(f"missing column(s) {missing}; give every column (None where a nullable one is unknown).")
    clean = {column.name: _check_value(column, full[column.name]) for column in columns}
    if clean["schema_version"] != SCHEMA_VERSION:
        raise ValueError(
            f"column 'schema_version' must be {SCHEMA_VERSION} (this writer's schema), "
            f"but got {clean['schema_version']}."
        )
    _check_name("column 'experiment'", clean["experiment"])
    _check_name("column 'trial_id'", clean["trial_id"])
    return clean


def _validate_fold_row(row: Mapping[str, Any]) -> dict[str, Any]:
    clean = _validate(_FOLD_COLUMNS, row, defaults={"schema_version": SCHEMA_VERSION, "written_at": datetime.now(UTC)})
    if clean["status"] not in FOLD_STATUSES:
        raise ValueError(f"column 'status' must be one of {FOLD_STATUSES}, but got {clean['status']!r}.")
    if clean["fold"] < 1:
        raise ValueError(f"column 'fold' must be >= 1 (folds are numbered from 1), but got {clean['fold']}.")
    if clean["n_folds"] < 1:
        raise ValueError(f"column 'n_folds' must be >= 1, but got {clean['n_folds']}.")
    if clean["attempt"] < 0:
        raise ValueError(f"column 'attempt' must be >= 0, but got {clean['attempt']}.")
    if clean["status"] == "completed":
        for name in _COMPLETED_NEEDS:
            if clean[name] is None:
                raise ValueError(f"column {name!r} must not be null in a completed row.")
        if clean["error"] is not None:
            raise ValueError(f"column 'error' must be null in a completed row, but got {clean['error']!r}.")
    elif clean["error"] is None:
        raise ValueError("column 'error' must say what went wrong in a failed row, but got None.")
    for name in ("ua", "wa", "macro_f1", "valid_ua"):
        if clean[name] is not None and not 0.0 <= clean[name] <= 1.0:
            raise ValueError(f"column {name!r} must be a fraction in [0, 1], but got {clean[name]}.")
    return clean


# ---------------------------------------------------------------------------------------- write
def write_fold_row(storage: str | os.PathLike[str] | StorageLocation, row: Mapping[str, Any]) -> str:
    """Validate one fold row and write it as its own part file, atomically; return the file's path.

    ``schema_version`` and ``written_at`` are filled in when absent; every other column of
    ``SCHEMA`` must be given (None where nullable). Writing the same (trial, fold, attempt)
    again replaces the file as a whole, so a retried write never doubles a row.
    """
    clean = _validate_fold_row(row)
    table = pa.Table.from_pylist([clean], schema=SCHEMA)
    relative = part_path(
        experiment=clean["experiment"], trial_id=clean["trial_id"], fold=clean["fold"], attempt=clean["attempt"]
    )
    what = f"the leaderboard row of trial {clean['trial_id']} fold {clean['fold']} attempt {clean['attempt']}"
    return _put(resolve_storage(storage), relative, _parquet_bytes(table), what=what)


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
    if status not in TRIAL_STATUSES:
        raise ValueError(f"status must be one of {TRIAL_STATUSES}, but got {status!r}.")
    clean = _validate(
        _TRIAL_COLUMNS,
        {
            "experiment": experiment,
            "trial_id": trial_id,
            "status": status,
            "step": step,
            "reason": reason,
            "params_json": params_json,
        },
        defaults={"schema_version": SCHEMA_VERSION, "updated_at": datetime.now(UTC)},
    )
    if clean["step"] < 0:
        raise ValueError(f"step must be >= 0, but got {clean['step']}.")
    table = pa.Table.from_pylist([clean], schema=TRIAL_SCHEMA)
    return _put(
        resolve_storage(storage),
        trial_status_path(experiment=experiment, trial_id=trial_id),
        _parquet_bytes(table),
        what=f"the status of trial {trial_id}",
    )


# ----------------------------------------------------------------------------------------- scan
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
    file_stats: Mapping[str, tuple[str, int, int]] = field(default_factory=dict, repr=False)  # path -> key, size, mtime

    @property
    def unsnapshotted(self) -> int:
        """Good files a query must open one by one (not served by a snapshot)."""
        covered = sum(len(s.covers) for s in (*self.snapshots, *self.trial_snapshots))
        return len(self.parts) + len(self.trial_files) - covered

    def damage_report(self) -> list[str]:
        """One line per damaged file, for a CLI to print."""
        return [f"skipped damaged file {item.path}: {item.reason}" for item in self.damaged]


class _Verdict(NamedTuple):
    reason: str | None  # None = good
    fingerprint: str  # column names and types, to know whether files can be read without union
    cacheable: bool


_CACHE_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("reason", pa.string()),
        ("fingerprint", pa.string()),
    ]
)
_CACHE_FILE = "footers.parquet"


def _family(kind: pa.DataType) -> str:
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_floating(kind):
        return "floating"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or str(kind) == "string_view":
        return "string"
    if pa.types.is_timestamp(kind):
        return "timestamp"
    return str(kind)


def _schema_problem(found: pa.Schema, expected: pa.Schema) -> str | None:
    missing = [name for name in expected.names if found.get_field_index(name) < 0]
    if missing:
        return f"missing column(s) {missing}"
    for expected_field in expected:
        kind = found.field(expected_field.name).type
        if not pa.types.is_null(kind) and _family(kind) != _family(expected_field.type):
            return f"column {expected_field.name!r} is {kind}, expected {expected_field.type}"
    return None


def _fingerprint(schema: pa.Schema) -> str:
    text = ";".join(f"{f.name}:{f.type}" for f in sorted(schema, key=lambda f: f.name))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


_EXPECTED_FINGERPRINT = _fingerprint(pa.schema(list(SCHEMA) + [pa.field("~", pa.null())] + list(TRIAL_SCHEMA)))


def _check_footer(
    location: StorageLocation, path: str, expected: pa.Schema, memo: dict[pa.Schema, tuple[str | None, str]]
) -> _Verdict:
    """Read only the footer of ``path`` and say whether it is a part file we can query.

    ``memo`` maps schemas already judged in this scan to their verdict: part files share a few
    schemas, and judging one costs as much as reading its footer.
    """
    try:
        schema = pq.read_schema(path, filesystem=None if location.is_local else location.filesystem)
    except FileNotFoundError:
        return _Verdict("vanished while being checked", "", False)
    except pa.ArrowInvalid as error:  # not Parquet, truncated, bad footer
        return _Verdict(f"not a readable Parquet file ({error})", "", True)
    except (OSError, pa.ArrowException) as error:  # I/O trouble may pass: check again next time
        return _Verdict(f"could not read its footer ({error})", "", False)
    judged = memo.get(schema)
    if judged is None:
        judged = memo[schema] = (_schema_problem(schema, expected), _fingerprint(schema))
    return _Verdict(judged[0], judged[1], True)


def _cache_path(location: StorageLocation) -> str:
    return location.path(CACHE_DIR, _CACHE_FILE)


def _read_cache(location: StorageLocation) -> dict[str, tuple[int, int, str | None, str]]:
    """The footer cache, or {} when it is absent, unreadable or made for another schema."""
    path = _cache_path(location)
    try:
        if location.is_local:
            table = pq.read_table(path)
        else:
            with location.filesystem.open_input_file(path) as handle:
                table = pq.read_table(handle)
    except (OSError, pa.ArrowException):  # a missing or damaged cache only costs a rebuild
        return {}
    stamp = (table.schema.metadata or {}).get(b"sernas.cache")
    if stamp != _EXPECTED_FINGERPRINT.encode() or table.schema.names != _CACHE_SCHEMA.names:
        return {}
    columns = table.to_pydict()
    return {
        path: (size, mtime, reason, fp)
        for path, size, mtime, reason, fp in zip(
            columns["path"], columns["size"], columns["mtime_ns"], columns["reason"], columns["fingerprint"]
        )
    }


def _write_cache(location: StorageLocation, cache: Mapping[str, tuple[int, int, str | None, str]]) -> None:
    paths = sorted(cache)
    table = pa.table(
        {
            "path": paths,
            "size": [cache[p][0] for p in paths],
            "mtime_ns": [cache[p][1] for p in paths],
            "reason": [cache[p][2] for p in paths],
            "fingerprint": [cache[p][3] for p in paths],
        },
        schema=_CACHE_SCHEMA.with_metadata({b"sernas.cache": _EXPECTED_FINGERPRINT.encode()}),
    )
    try:
        _put(location, f"{CACHE_DIR}/{_CACHE_FILE}", _parquet_bytes(table), what="the leaderboard footer cache")
    except OSError as error:  # e.g. read-only storage: the scan is still right, only slower next time
        warnings.warn(f"{error}; the next scan will check every footer again.", RuntimeWarning, stacklevel=3)


def _list_files(location: StorageLocation, base: str) -> list[pafs.FileInfo]:
    selector = pafs.FileSelector(location.path(base), recursive=True, allow_not_found=True)
    return [info for info in location.filesystem.get_file_info(selector) if info.type == pafs.FileType.File]


def _check_root(location: StorageLocation) -> None:
    info = location.filesystem.get_file_info(location.root or "/")
    if location.is_local and info.type != pafs.FileType.Directory:
        raise FileNotFoundError(
            f"no leaderboard storage at {location.shown(location.root)}: "
            f"{'it is not a directory' if info.type == pafs.FileType.File else 'it does not exist'}."
        )


def _relative(location: StorageLocation, path: str) -> str:
    return path[len(location.root.rstrip("/")) :].lstrip("/")


def _readable(location: StorageLocation, path: str) -> str:
    """How DuckDB (local) or the pyarrow reader (object stores) is given ``path``."""
    return path if location.is_local else location.shown(path)


def _latest_snapshots(
    location: StorageLocation, top: str, experiment: str | None
) -> list[tuple[str, str, dict[str, tuple[int, int]]]]:
    """The newest readable snapshot of each experiment: (path, experiment, entries)."""
    base = f"{SNAPSHOT_DIR}/{top}" + ("" if experiment is None else f"/{experiment}")
    newest: dict[str, list[pafs.FileInfo]] = {}
    for info in _list_files(location, base):
        if info.base_name.endswith(".parquet") and not info.base_name.startswith("."):
            newest.setdefault(info.path.rsplit("/", 2)[-2], []).append(info)
    found = []
    for name, infos in sorted(newest.items()):
        for info in sorted(infos, key=lambda item: item.base_name, reverse=True):  # names start with a timestamp
            try:
                metadata = (
                    pq.read_schema(info.path, filesystem=None if location.is_local else location.filesystem).metadata
                    or {}
                )
                entries = {
                    key: (int(size), int(mtime)) for key, (size, mtime) in json.loads(metadata[_COVERS_KEY]).items()
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
    updated: dict[str, tuple[int, int, str | None, str]],
) -> _KindScan:
    """Scan the files of one kind (fold rows or trial statuses); ``updated`` gets new footer verdicts."""
    base = top if experiment is None else f"{top}/{experiment}"
    listed: list[tuple[pafs.FileInfo, str]] = []
    temporary: list[str] = []
    for info in _list_files(location, base):
        if info.base_name.startswith(".tmp-"):
            temporary.append(location.shown(info.path))
        elif info.base_name.endswith(".parquet") and not info.base_name.startswith("."):
            listed.append((info, _relative(location, info.path)))
    stat = {key: (info.size, info.mtime_ns if info.mtime_ns is not None else -1) for info, key in listed}

    snapshot_of: dict[str, int] = {}  # source key -> index of the snapshot holding it unchanged
    latest = _latest_snapshots(location, top, experiment)
    for index, (_, _, entries) in enumerate(latest):
        for key, size_mtime in entries.items():
            if stat.get(key) == size_mtime:
                snapshot_of[key] = index
    covers: list[set[str]] = [set() for _ in latest]

    todo: list[tuple[pafs.FileInfo, str]] = []
    verdicts: dict[str, _Verdict] = {}
    cached = 0
    for info, key in listed:
        if key in snapshot_of:  # checked when it was compacted, unchanged since
            verdicts[key] = _Verdict(None, "snapshot", False)
            continue
        hit = cache.get(key)
        if hit is not None and (hit[0], hit[1]) == stat[key]:
            verdicts[key] = _Verdict(hit[2], hit[3], True)
            cached += 1
        else:
            todo.append((info, key))
    memo: dict[pa.Schema, tuple[str | None, str]] = {}
    if location.is_local:  # footers of local files: sequential reads beat a thread pool here
        checked = [_check_footer(location, info.path, expected, memo) for info, _ in todo]
    else:  # object stores: latency-bound, so overlap the requests
        with ThreadPoolExecutor(max_workers=16) as pool:
            checked = list(pool.map(lambda item: _check_footer(location, item[0].path, expected, memo), todo))
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
        path = _readable(location, info.path)
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
                path=_readable(location, path), experiment=name, entries=entries, covers=frozenset(covered), stale=stale
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
        _check_name("experiment", experiment)
    cache = _read_cache(location) if use_cache else {}
    updated = dict(cache)
    rows = _scan_kind(location, LEADERBOARD_DIR, SCHEMA, experiment, cache, updated)
    trials = _scan_kind(location, TRIALS_DIR, TRIAL_SCHEMA, experiment, cache, updated)
    if use_cache and updated != cache:
        _write_cache(location, updated)
    return PartScan(
        storage=location.shown(location.root),
        parts=tuple(rows.good),
        trial_files=tuple(trials.good),
        damaged=tuple(rows.damaged + trials.damaged),
        temporary=tuple(sorted(rows.temporary + trials.temporary)),
        parts_uniform=len(rows.fingerprints) <= 1,
        trials_uniform=len(trials.fingerprints) <= 1,
        footers_read=rows.read + trials.read,
        footers_cached=rows.cached + trials.cached,
        seconds=time.perf_counter() - started,
        snapshots=tuple(rows.snapshots),
        trial_snapshots=tuple(trials.snapshots),
        file_stats={**rows.stats, **trials.stats},
    )


# ------------------------------------------------------------------------------------- compaction
@dataclass(frozen=True)
class Compaction:
    """What ``compact`` did."""

    written: tuple[str, ...]  # new snapshot files
    files: int  # part and status files newly taken into a snapshot
    rows: int  # rows in the new snapshots
    removed: tuple[str, ...]  # superseded snapshots deleted
    seconds: float


def _not_stale_sql(stale: Sequence[str]) -> str:
    """A WHERE clause dropping a snapshot's rows of ``stale`` sources ('' when there are none)."""
    return f" WHERE {SOURCE_COLUMN} NOT IN (SELECT unnest({_sql_list(stale)}))" if stale else ""


def _read_remote(location: StorageLocation, shown: str) -> pa.Table:
    """One Parquet file of an object-store leaderboard, named as the user sees it."""
    with location.filesystem.open_input_file(location.path(_relative_shown(location, shown))) as handle:
        return pq.read_table(handle)


def _read_remote_snapshot(location: StorageLocation, snapshot: Snapshot) -> pa.Table:
    """A snapshot's rows (with their ``_source``) minus those of its stale sources."""
    table = _read_remote(location, snapshot.path)
    if snapshot.stale:
        table = table.filter(pc.invert(pc.is_in(table[SOURCE_COLUMN], pa.array(snapshot.stale))))
    return table


def _read_rows(
    location: StorageLocation,
    *,
    snapshot: Snapshot | None,
    files: Sequence[str],
    stats: Mapping[str, tuple[str, int, int]],
) -> pa.Table:
    """The rows a new snapshot holds: the old snapshot's still-valid rows plus ``files``, with sources."""
    tables = []
    if location.is_local:
        with duckdb.connect() as con:
            if snapshot is not None:
                tables.append(
                    con.sql(
                        f"SELECT * FROM read_parquet({_sql_list([snapshot.path])}){_not_stale_sql(snapshot.stale)}"
                    ).to_arrow_table()
                )
            if files:
                cut = len(location.root.rstrip("/")) + 2
                tables.append(
                    con.sql(
                        f"SELECT * EXCLUDE (filename), substr(filename, {cut}) AS {SOURCE_COLUMN} "
                        f"FROM read_parquet({_sql_list(files)}, union_by_name = true, filename = true)"
                    ).to_arrow_table()
                )
    else:
        if snapshot is not None:
            tables.append(_read_remote_snapshot(location, snapshot))
        with ThreadPoolExecutor(max_workers=16) as pool:
            parts = list(pool.map(functools.partial(_read_remote, location), files))
        tables += [
            table.append_column(SOURCE_COLUMN, pa.array([stats[path][0]] * table.num_rows, pa.string()))
            for path, table in zip(files, parts)
        ]
    tables = [table.cast(table.schema.remove_metadata()) if table.schema.metadata else table for table in tables]
    return pa.concat_tables(tables, promote_options="permissive")


def _relative_shown(location: StorageLocation, shown: str) -> str:
    root = location.display.rstrip("/")
    return shown[len(root) :].lstrip("/") if shown.startswith(root) else _relative(location, shown)


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
    done = _compact_scanned(location, scan_parts(location, experiment=experiment), grace_seconds=grace_seconds)
    return dataclasses.replace(done, seconds=time.perf_counter() - started)  # the scan included


def _compact_scanned(location: StorageLocation, scan: PartScan, *, grace_seconds: float) -> Compaction:
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
            table = _read_rows(location, snapshot=snapshot, files=new, stats=scan.file_stats)
            stale = set(snapshot.stale) if snapshot is not None else set()
            entries = {
                key: list(size_mtime)
                for key, size_mtime in (snapshot.entries if snapshot else {}).items()
                if key not in stale
            }
            entries.update({scan.file_stats[path][0]: list(scan.file_stats[path][1:]) for path in new})
            table = table.replace_schema_metadata(
                {
                    _COVERS_KEY: json.dumps(entries, separators=(",", ":")).encode(),
                    _METADATA_KEY: str(SCHEMA_VERSION).encode(),
                }
            )
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, compression="zstd", row_group_size=131_072)
            relative = f"{SNAPSHOT_DIR}/{top}/{name}/{time.time_ns():020d}-{os.urandom(4).hex()}.parquet"
            written.append(_put(location, relative, sink.getvalue(), what=f"a leaderboard snapshot of {name}"))
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
    for info in _list_files(location, folder):
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


def list_experiments(storage: str | os.PathLike[str] | StorageLocation) -> list[str]:
    """Names of the experiments that have a leaderboard folder under ``storage``."""
    location = resolve_storage(storage)
    selector = pafs.FileSelector(location.path(LEADERBOARD_DIR), recursive=False, allow_not_found=True)
    return sorted(
        info.base_name
        for info in location.filesystem.get_file_info(selector)
        if info.type == pafs.FileType.Directory and not info.base_name.startswith(".")
    )


# ---------------------------------------------------------------------------------------- query
Summary = Literal["genotype", "trial", "config"]
_SUMMARY_KEYS: dict[str, tuple[str, ...]] = {
    "genotype": ("experiment", "genotype_hash"),
    "trial": ("experiment", "trial_id"),
    "config": ("experiment", "config_json"),
}
_SUMMARY_EXTRA: dict[str, str] = {
    "genotype": "",
    "trial": ", any_value(seed) AS seed, any_value(trial_status) AS trial_status, "
    "count(DISTINCT genotype_hash) AS genotypes, any_value(params_json) AS params_json",
    "config": "".join(f', any_value("{name}") AS "{name}"' for name in _CONFIG_COLUMNS)
    + ", count(DISTINCT genotype_hash) AS genotypes",
}
SUMMARY_VIEWS = {"genotype": "genotypes", "trial": "trial_scores", "config": "config_scores"}


def summary_sql(by: Summary = "genotype", *, where: str | None = None) -> str:
    """The SELECT behind the ``genotypes`` / ``trial_scores`` / ``config_scores`` views.

    Aggregates the rows of ``runs`` whose status is completed or pruned (optionally only those
    matching the SQL condition ``where``, e.g. ``"layers = 4"``), first per fold, then across
    folds, and ranks within each experiment: complete entries (every fold covered) by mean UA
    first, then incomplete ones, also by mean UA.
    """
    if by not in _SUMMARY_KEYS:
        raise ValueError(f"by must be one of {tuple(_SUMMARY_KEYS)}, but got {by!r}.")
    keys = _SUMMARY_KEYS[by]
    key_list = ", ".join(keys)
    config_key = "json_merge_patch(params_json, '{\"seed\": null}') AS config_json, " if by == "config" else ""
    condition = f" AND ({where})" if where else ""
    join = " AND ".join(f"f.{key} IS NOT DISTINCT FROM r.{key}" for key in keys)
    return f"""
WITH scored AS (
    SELECT {config_key}* FROM runs
    WHERE status IN ('completed', 'pruned') AND ua IS NOT NULL{condition}
),
per_fold AS (  -- each fold weighs the same, however many trials found the entry on it
    SELECT {key_list}, fold, avg(ua) AS ua, avg(wa) AS wa, avg(macro_f1) AS macro_f1
    FROM scored GROUP BY ALL
),
across_folds AS (
    SELECT {key_list}, avg(ua) AS mean_ua, stddev_samp(ua) AS std_ua, avg(wa) AS mean_wa,
           avg(macro_f1) AS mean_macro_f1, count(*) AS folds_covered
    FROM per_fold GROUP BY ALL
),
per_entry AS (
    SELECT {key_list}, max(n_folds) AS n_folds, count(DISTINCT trial_id) AS trials, count(DISTINCT seed) AS seeds,
           count(*) AS runs, count(*) FILTER (WHERE status = 'pruned') AS pruned_runs, avg(params) AS mean_params,
           sum(coalesce(search_seconds, 0) + coalesce(eval_seconds, 0)) AS total_seconds{_SUMMARY_EXTRA[by]}
    FROM scored GROUP BY ALL
)
SELECT CAST(row_number() OVER (PARTITION BY f.experiment
                               ORDER BY f.folds_covered >= r.n_folds DESC, f.mean_ua DESC,
                                        f.folds_covered DESC, f.{keys[-1]}) AS INTEGER) AS rank,
       f.*, r.n_folds, f.folds_covered >= r.n_folds AS complete, r.* EXCLUDE ({key_list}, n_folds)
FROM across_folds AS f JOIN per_entry AS r ON {join}
"""


_RUNS_SQL = """
CREATE OR REPLACE VIEW runs AS
SELECT f.* REPLACE (CASE WHEN f.status = 'completed' AND t.status = 'pruned' THEN 'pruned' ELSE f.status END AS status),
       t.status AS trial_status, t.reason AS trial_reason
FROM fold_rows AS f
LEFT JOIN trials AS t ON t.experiment = f.experiment AND t.trial_id = f.trial_id
QUALIFY row_number() OVER (PARTITION BY f.experiment, f.trial_id, f.fold
                           ORDER BY f.attempt DESC, f.written_at DESC, t.updated_at DESC) = 1
"""


def _sql_list(paths: Iterable[str]) -> str:
    return "[" + ", ".join("'" + path.replace("'", "''") + "'" for path in paths) + "]"


def _create_source(
    con: duckdb.DuckDBPyConnection,
    name: str,
    files: Sequence[str],
    schema: pa.Schema,
    *,
    location: StorageLocation,
    uniform: bool,
    materialize: bool,
    snapshots: Sequence[Snapshot] = (),
) -> None:
    """``name`` as a view (or table) over ``files``; typed and empty when there are none.

    Files covered by one of ``snapshots`` are read from the snapshot instead (minus its stale
    sources), so the view holds exactly the rows of ``files``, whichever way they are read.
    """
    kind = "TABLE" if materialize else "VIEW"
    covered = set().union(*(snapshot.covers for snapshot in snapshots))
    direct = [path for path in files if path not in covered]
    if not direct and not snapshots:
        empty = schema.empty_table()
        con.register(f"_{name}_arrow", empty)
        con.execute(f"CREATE OR REPLACE TABLE _{name}_empty AS SELECT * FROM _{name}_arrow")
        con.unregister(f"_{name}_arrow")
        con.execute(f"CREATE OR REPLACE {kind} {name} AS SELECT * FROM _{name}_empty")
    elif location.is_local:
        selects = []
        if snapshots:
            stale = [source for snapshot in snapshots for source in snapshot.stale]
            selects.append(
                f"SELECT * EXCLUDE ({SOURCE_COLUMN}) FROM read_parquet("
                f"{_sql_list(s.path for s in snapshots)}, union_by_name = true){_not_stale_sql(stale)}"
            )
        if direct:
            # Files with identical columns need no union (DuckDB then skips reading every footer
            # at bind time); mixed schema versions are matched by column name.
            selects.append(
                f"SELECT * FROM read_parquet({_sql_list(direct)}, "
                f"union_by_name = {'false' if uniform and not snapshots else 'true'})"
            )
        con.execute(f"CREATE OR REPLACE {kind} {name} AS " + " UNION ALL BY NAME ".join(selects))
    else:  # object stores: read through pyarrow.fs (same credentials as the writers), then query in memory
        with ThreadPoolExecutor(max_workers=16) as pool:
            tables = list(pool.map(functools.partial(_read_remote, location), direct))
        tables += [_read_remote_snapshot(location, snapshot).drop_columns([SOURCE_COLUMN]) for snapshot in snapshots]
        table = pa.concat_tables(tables, promote_options="permissive")
        con.register(f"_{name}_arrow", table)
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _{name}_arrow")
        con.unregister(f"_{name}_arrow")


@dataclass
class Leaderboard:
    """A DuckDB connection with the leaderboard views, and the scan it was built from.

    Views: ``fold_rows`` (every row of every good part file), ``trials`` (trial status files),
    ``runs`` (latest attempt per (experiment, trial_id, fold), pruned trials' rows marked
    ``pruned``), ``genotypes``, ``trial_scores`` and ``config_scores`` (see ``summary_sql``).
    The file list is fixed at ``connect``: connect again to see rows written since.
    """

    con: duckdb.DuckDBPyConnection
    scan: PartScan
    storage: StorageLocation = field(repr=False)

    @property
    def damaged(self) -> tuple[DamagedFile, ...]:
        return self.scan.damaged

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run any SQL over the views and return a DataFrame."""
        return self.con.execute(query, params or []).df()

    def summary(self, by: Summary = "genotype", *, where: str | None = None, top: int | None = None) -> pd.DataFrame:
        """Ranked entries per experiment (``top`` best of each), complete entries first."""
        if top is not None and top < 1:
            raise ValueError(f"top must be >= 1, but got {top}.")
        limit = f" WHERE rank <= {int(top)}" if top is not None else ""
        return self.sql(f"SELECT * FROM ({summary_sql(by, where=where)}){limit} ORDER BY experiment, rank")

    def top_genotypes(self, n: int = 10) -> pd.DataFrame:
        return self.summary("genotype", top=n)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Leaderboard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def connect(
    storage: str | os.PathLike[str] | StorageLocation,
    *,
    experiment: str | None = None,
    materialize: bool = False,
    database: str | os.PathLike[str] = ":memory:",
    use_cache: bool = True,
    compact_at: int | None = AUTO_COMPACT_FILES,
) -> Leaderboard:
    """Scan ``storage`` and return a ``Leaderboard`` whose DuckDB connection has the views.

    Damaged files are listed in ``Leaderboard.damaged`` and skipped. With ``materialize`` the
    rows are copied into DuckDB once (faster repeated queries, more memory); otherwise every
    query reads the part files (only the columns it needs). ``database`` may name a DuckDB
    file, so that the ``duckdb`` CLI can open the same views later. Object-store leaderboards
    are read through ``pyarrow.fs`` and always materialized.

    When at least ``compact_at`` good files are outside a snapshot, ``compact`` runs first
    (``None``: never), so that large leaderboards are read from a few files; on storage this
    process cannot write, that only costs a warning.
    """
    location = resolve_storage(storage)
    scan = scan_parts(location, experiment=experiment, use_cache=use_cache)
    if compact_at is not None and scan.unsnapshotted >= max(compact_at, 1):
        try:
            _compact_scanned(location, scan, grace_seconds=SNAPSHOT_GRACE_SECONDS)
        except (OSError, duckdb.Error, pa.ArrowException) as error:  # e.g. read-only storage, a file deleted meanwhile
            warnings.warn(
                f"could not compact the leaderboard ({error}); reading its files one by one.",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            scan = scan_parts(location, experiment=experiment, use_cache=use_cache)
    con = duckdb.connect(str(database))
    try:
        con.execute("SET TimeZone = 'UTC'")
        _create_source(
            con,
            "fold_rows",
            scan.parts,
            SCHEMA,
            location=location,
            uniform=scan.parts_uniform,
            materialize=materialize,
            snapshots=scan.snapshots,
        )
        _create_source(
            con,
            "trials",
            scan.trial_files,
            TRIAL_SCHEMA,
            location=location,
            uniform=scan.trials_uniform,
            materialize=materialize,
            snapshots=scan.trial_snapshots,
        )
        con.execute(_RUNS_SQL)
        for by, view in SUMMARY_VIEWS.items():
            con.execute(f"CREATE OR REPLACE VIEW {view} AS {summary_sql(by)}")
    except BaseException:
        con.close()
        raise
    return Leaderboard(con=con, scan=scan, storage=location)


def top_genotypes(
    storage: str | os.PathLike[str] | StorageLocation, *, experiment: str | None = None, n: int = 10
) -> pd.DataFrame:
    """The ``n`` best genotypes of each experiment; ``frame.attrs['damaged']`` lists skipped files."""
    with connect(storage, experiment=experiment) as board:
        frame = board.top_genotypes(n)
        frame.attrs["damaged"] = [tuple(item) for item in board.damaged]
    return frame
