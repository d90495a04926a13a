"""Checking part files by their Parquet footer, with the verdicts cached by (path, size, mtime).

Reading a footer tells whether a file is Parquet and has the columns a query needs, without
reading its rows. The verdicts are kept in ``<storage>/.leaderboard-cache/footers.parquet``, so
10,000 unchanged files cost one listing; the cache is derived and safe to delete.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from typing import NamedTuple

import pyarrow as pa

from orchestrator.leaderboard.parts import CACHE_DIR, read_schema, read_table, write_parquet
from orchestrator.leaderboard.schema import ADDED_COLUMNS, RENAMED_COLUMNS, SCHEMA, TRIAL_SCHEMA
from orchestrator.storage import StorageLocation

FooterCache = dict[str, tuple[int, int, str | None, str]]  # relative key -> size, mtime_ns, reason, fingerprint


class Verdict(NamedTuple):
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
    former = {new: old for old, new in RENAMED_COLUMNS.items() if new in expected.names}

    def stored_name(name: str) -> str:  # older files hold a renamed column under its old name
        return former[name] if found.get_field_index(name) < 0 and name in former else name

    missing = [
        name for name in expected.names if found.get_field_index(stored_name(name)) < 0 and name not in ADDED_COLUMNS
    ]
    if missing:  # (columns a later schema version added are null in older files)
        return f"missing column(s) {missing}"
    for expected_field in expected:
        name = stored_name(expected_field.name)
        if found.get_field_index(name) < 0:
            continue
        kind = found.field(name).type
        if not pa.types.is_null(kind) and _family(kind) != _family(expected_field.type):
            return f"column {name!r} is {kind}, expected {expected_field.type}"
    return None


def _fingerprint(schema: pa.Schema) -> str:
    text = ";".join(f"{f.name}:{f.type}" for f in sorted(schema, key=lambda f: f.name))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


_EXPECTED_FINGERPRINT = _fingerprint(pa.schema(list(SCHEMA) + [pa.field("~", pa.null())] + list(TRIAL_SCHEMA)))


def check_footer(
    location: StorageLocation, path: str, expected: pa.Schema, memo: dict[pa.Schema, tuple[str | None, str]]
) -> Verdict:
    """Read only the footer of ``path`` and say whether it is a part file we can query.

    ``memo`` maps schemas already judged in this scan to their verdict: part files share a few
    schemas, and judging one costs as much as reading its footer.
    """
    try:
        schema = read_schema(location, path)
    except FileNotFoundError:
        return Verdict("vanished while being checked", "", False)
    except pa.ArrowInvalid as error:  # not Parquet, truncated, bad footer
        return Verdict(f"not a readable Parquet file ({error})", "", True)
    except (OSError, pa.ArrowException) as error:  # I/O trouble may pass: check again next time
        return Verdict(f"could not read its footer ({error})", "", False)
    judged = memo.get(schema)
    if judged is None:
        judged = memo[schema] = (_schema_problem(schema, expected), _fingerprint(schema))
    return Verdict(judged[0], judged[1], True)


def _cache_path(location: StorageLocation) -> str:
    return location.path(CACHE_DIR, _CACHE_FILE)


def read_cache(location: StorageLocation) -> FooterCache:
    """The footer cache, or {} when it is absent, unreadable or made for another schema."""
    path = _cache_path(location)
    try:
        table = read_table(location, path)
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


def write_cache(location: StorageLocation, cache: Mapping[str, tuple[int, int, str | None, str]]) -> None:
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
        write_parquet(location, f"{CACHE_DIR}/{_CACHE_FILE}", table, what="the leaderboard footer cache")
    except OSError as error:  # e.g. read-only storage: the scan is still right, only slower next time
        warnings.warn(f"{error}; the next scan will check every footer again.", RuntimeWarning, stacklevel=3)
