"""Rows of part files and snapshots as one DuckDB query: the one place local and remote part ways.

Local files are read by DuckDB itself (lazily, only the columns a query needs). Object-store
files are read through ``pyarrow.fs`` (the writers' credentials) and handed to DuckDB as Arrow
tables. Everything else (skipping a snapshot's stale rows, naming each row's source file, the
union of schema versions, reading a renamed column of older files under its current name) is the
same SQL either way, for the views and for compaction.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import duckdb
import pyarrow as pa

from orchestrator.leaderboard.parts import key_of_readable, read_table
from orchestrator.leaderboard.scan import Snapshot
from orchestrator.storage import StorageLocation

__all__ = ["SOURCE_COLUMN", "rows_query"]

SOURCE_COLUMN = "_source"  # in snapshot rows: the part file (relative to the storage root) a row came from


def sql_list(paths: Iterable[str]) -> str:
    return "[" + ", ".join("'" + path.replace("'", "''") + "'" for path in paths) + "]"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def current_names(query: str, renamed: Mapping[str, str]) -> str:
    """``query`` with each column that older files hold under an old name (``renamed``: old -> new)
    read under its new name, whichever of the two a row has; the old names are dropped.

    A stub without rows that has both names joins the union, so the SQL binds whether the files
    hold the old name, the new one or both (a mix of schema versions).
    """
    if not renamed:
        return query
    both = ", ".join(f"NULL AS {_quoted(name)}" for pair in renamed.items() for name in pair)
    replace = ", ".join(f"coalesce({_quoted(new)}, {_quoted(old)}) AS {_quoted(new)}" for old, new in renamed.items())
    exclude = ", ".join(_quoted(old) for old in renamed)
    return (
        f"SELECT * EXCLUDE ({exclude}) REPLACE ({replace}) "
        f"FROM (({query}) UNION ALL BY NAME (SELECT {both} WHERE false))"
    )


def _read_remote(location: StorageLocation, readable: str) -> pa.Table:
    return read_table(location, location.path(key_of_readable(location, readable)))


@contextlib.contextmanager
def rows_query(
    con: duckdb.DuckDBPyConnection,
    location: StorageLocation,
    *,
    files: Sequence[str],
    snapshots: Sequence[Snapshot],
    uniform: bool,
    sources: bool,
    renamed: Mapping[str, str],
) -> Iterator[str]:
    """A SELECT over the rows of ``files`` and ``snapshots`` (minus their stale sources), valid in the block.

    ``sources`` keeps the ``_source`` column (each row's file, relative to the storage root),
    which compaction stores; the views drop it. ``uniform`` says every file has the same
    columns, so DuckDB may skip matching them by name (and reading every footer to do so).
    ``renamed`` (old name -> current name; ``schema.RENAMED_COLUMNS`` for fold rows) puts the
    columns of older files under their current names (``current_names``), so neither views nor
    snapshots ever see an old name. At least one of ``files`` and ``snapshots`` must be non-empty.
    """
    registered: list[str] = []

    def relation(paths: Sequence[str], *, union: bool, add_source: bool) -> str:
        if location.is_local:
            if not add_source:
                return f"read_parquet({sql_list(paths)}, union_by_name = {'true' if union else 'false'})"
            cut = len(location.root.rstrip("/")) + 2
            return (
                f"(SELECT * EXCLUDE (filename), substr(filename, {cut}) AS {SOURCE_COLUMN} "
                f"FROM read_parquet({sql_list(paths)}, union_by_name = true, filename = true))"
            )
        with ThreadPoolExecutor(max_workers=16) as pool:  # latency-bound: overlap the requests
            tables = list(pool.map(functools.partial(_read_remote, location), paths))
        if add_source:
            tables = [
                table.append_column(
                    SOURCE_COLUMN, pa.array([key_of_readable(location, path)] * table.num_rows, pa.string())
                )
                for path, table in zip(paths, tables)
            ]
        name = f"_rows_{len(registered)}"
        con.register(name, pa.concat_tables(tables, promote_options="permissive"))
        registered.append(name)
        return name

    selects = []
    if snapshots:
        stale = [source for snapshot in snapshots for source in snapshot.stale]
        where = f" WHERE {SOURCE_COLUMN} NOT IN (SELECT unnest({sql_list(stale)}))" if stale else ""
        exclude = "" if sources else f" EXCLUDE ({SOURCE_COLUMN})"
        paths = [snapshot.path for snapshot in snapshots]
        selects.append(f"SELECT *{exclude} FROM {relation(paths, union=True, add_source=False)}{where}")
    if files:
        # Files with identical columns need no union (DuckDB then skips reading every footer
        # at bind time); mixed schema versions are matched by column name.
        union = not uniform or bool(snapshots)
        selects.append(f"SELECT * FROM {relation(files, union=union, add_source=sources)}")
    try:
        yield current_names(" UNION ALL BY NAME ".join(selects), renamed)
    finally:
        for name in registered:
            con.unregister(name)
