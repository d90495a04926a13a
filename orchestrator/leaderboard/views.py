"""Querying the leaderboard: DuckDB views over the scanned files, and the rankings.

``connect`` scans the storage and builds the views ``fold_rows``, ``trials``, ``runs``,
``genotypes``, ``trial_scores`` and ``config_scores`` (search rows only) and ``cross_eval``
(cross-eval rows only; see docs/leaderboard.md) on one DuckDB
connection, compacting first when too many files lie outside a snapshot.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import duckdb
import pandas as pd
import pyarrow as pa

from orchestrator.leaderboard.cross_eval import CROSS_EVAL_SQL
from orchestrator.leaderboard.predictions import PREDICTION_SCHEMA
from orchestrator.leaderboard.scan import DamagedFile, PartScan, Snapshot, scan_parts
from orchestrator.leaderboard.schema import RENAMED_COLUMNS, SCHEMA, TRIAL_SCHEMA
from orchestrator.leaderboard.snapshots import SNAPSHOT_GRACE_SECONDS, compact_scanned
from orchestrator.leaderboard.sources import rows_query
from orchestrator.selection import RANK_BY, RankBy
from orchestrator.storage import StorageLocation, resolve_storage

__all__ = [
    "AUTO_COMPACT_FILES",
    "CONFIG_COLUMNS",
    "SUMMARY_VIEWS",
    "Leaderboard",
    "Summary",
    "connect",
    "summary_sql",
    "top_genotypes",
]

AUTO_COMPACT_FILES = 1000  # connect() compacts an experiment with at least this many files outside a snapshot
CONFIG_COLUMNS = (  # what a config is made of (the columns of --by config)
    "layers",
    "nodes",
    "init_channels",
    "lstm_hidden",
    "darts_order",
    "pc_k",
    "weights_lr",
    "search_epochs",
    "eval_epochs",
    "eval_layers",
    "eval_init_channels",
    "normalization",
    "arch_data",
)
Summary = Literal["genotype", "trial", "config"]
_SUMMARY_KEYS: dict[str, tuple[str, ...]] = {
    "genotype": ("experiment", "genotype_hash"),
    "trial": ("experiment", "trial_id"),
    "config": ("experiment", "config_json"),
}
_SUMMARY_EXTRA: dict[str, str] = {
    "genotype": "",
    "trial": ", any_value(seed) AS seed, any_value(trial_status) AS trial_status, "
    "count(DISTINCT genotype_hash) AS genotypes, any_value(params_json) AS params_json, "
    "CASE WHEN count(DISTINCT fold) = 1 THEN min(fold) END AS outer_fold, any_value(n_inner_folds) AS n_inner_folds",
    "config": "".join(f', any_value("{name}") AS "{name}"' for name in CONFIG_COLUMNS)
    + ", count(DISTINCT genotype_hash) AS genotypes",
}
SUMMARY_VIEWS = {"genotype": "genotypes", "trial": "trial_scores", "config": "config_scores"}


def summary_sql(by: Summary = "genotype", *, where: str | None = None, rank_by: RankBy = "valid") -> str:
    """The SELECT behind the ``genotypes`` / ``trial_scores`` / ``config_scores`` views.

    Aggregates the rows of ``runs`` whose status is completed or pruned (optionally only those
    matching the SQL condition ``where``, e.g. ``"layers = 4"``), first per outer fold (inner
    folds averaged), then across folds, and ranks within each experiment: complete entries
    (every trial behind it completed all its inner folds in its study; rows written before
    nested selection: every fold covered) by mean validation UA first, then incomplete ones. Test UA
    (``mean_test_ua``) sits beside it; ``rank_by="test"`` orders by it instead, which is optimistic (the test
    speakers then choose the order: see ``orchestrator.selection``).
    """
    if by not in _SUMMARY_KEYS:
        raise ValueError(f"by must be one of {tuple(_SUMMARY_KEYS)}, but got {by!r}.")
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {RANK_BY}, but got {rank_by!r}.")
    order = "mean_valid_ua DESC NULLS LAST, " if rank_by == "valid" else "mean_test_ua DESC, "
    keys = _SUMMARY_KEYS[by]
    key_list = ", ".join(keys)
    config_key = "json_merge_patch(params_json, '{\"seed\": null}') AS config_json, " if by == "config" else ""
    condition = f" AND ({where})" if where else ""
    join = " AND ".join(f"f.{key} IS NOT DISTINCT FROM r.{key}" for key in keys)
    return f"""
WITH scored AS (
    SELECT {config_key}* FROM runs  -- search rows only: cross-eval rows have their own view
    WHERE stage = 'search' AND status IN ('completed', 'pruned') AND test_ua IS NOT NULL{condition}
),
per_fold AS (  -- each fold weighs the same, however many trials found the entry on it
    SELECT {key_list}, fold, avg(valid_ua) AS valid_ua, avg(test_ua) AS test_ua, avg(test_wa) AS test_wa,
           avg(test_macro_f1) AS test_macro_f1
    FROM scored GROUP BY ALL
),
across_folds AS (
    SELECT {key_list}, avg(valid_ua) AS mean_valid_ua, stddev_samp(valid_ua) AS std_valid_ua,
           avg(test_ua) AS mean_test_ua, stddev_samp(test_ua) AS std_test_ua, avg(test_wa) AS mean_test_wa,
           avg(test_macro_f1) AS mean_test_macro_f1, count(*) AS folds_covered
    FROM per_fold GROUP BY ALL
),
per_entry AS (
    SELECT {key_list}, max(n_folds) AS n_folds, count(DISTINCT trial_id) AS trials, count(DISTINCT seed) AS seeds,
           count(*) AS runs, count(*) FILTER (WHERE status = 'pruned') AS pruned_runs,
           count(*) FILTER (WHERE search_stop_reason LIKE 'collapsed%') AS collapsed_searches,
           avg(alpha_entropy) AS mean_alpha_entropy, avg(params) AS mean_params,
           sum(coalesce(search_seconds, 0) + coalesce(eval_seconds, 0)) AS total_seconds,
           count(outer_fold) = 0 AS before_nesting,
           coalesce(bool_and(trial_status = 'completed'), false) AS trials_completed{_SUMMARY_EXTRA[by]}
    FROM scored GROUP BY ALL
),
judged AS (  -- complete: every trial behind it finished all its inner folds (older rows: it covers every fold)
    SELECT f.*, r.n_folds,
           CASE WHEN r.before_nesting THEN f.folds_covered >= r.n_folds ELSE r.trials_completed END AS complete,
           r.* EXCLUDE ({key_list}, n_folds, before_nesting, trials_completed)
    FROM across_folds AS f JOIN per_entry AS r ON {join}
)
SELECT CAST(row_number() OVER (PARTITION BY experiment
                               ORDER BY complete DESC, {order}
                                        folds_covered DESC, {keys[-1]}) AS INTEGER) AS rank, *
FROM judged
"""


_RUNS_SQL = """
CREATE OR REPLACE VIEW runs AS
SELECT f.* REPLACE (CASE WHEN f.status = 'completed' AND t.status = 'pruned' THEN 'pruned' ELSE f.status END AS status,
                    coalesce(f.stage, 'search') AS stage),  -- version-1 rows have no stage: they are search rows
       t.status AS trial_status, t.reason AS trial_reason
FROM fold_rows AS f
LEFT JOIN trials AS t ON t.experiment = f.experiment AND t.trial_id = f.trial_id
QUALIFY row_number() OVER (PARTITION BY f.experiment, coalesce(f.stage, 'search'), f.trial_id, f.fold, f.inner_fold
                           ORDER BY f.attempt DESC, f.written_at DESC, t.updated_at DESC) = 1
"""


_PREDICTIONS_SQL = """
CREATE OR REPLACE VIEW predictions AS
SELECT p.experiment, p.stage, p.trial_id, p.fold, p.inner_fold, p.attempt, p.split, p.utt_id, p.speaker, p.label,
       p.predicted, p.probabilities, r.status, r.genotype_hash, r.seed, r.source_trial_id, r.params_json, r.classes
FROM prediction_rows AS p
JOIN runs AS r ON r.experiment = p.experiment AND r.stage = p.stage AND r.trial_id = p.trial_id
              AND r.fold = p.fold AND r.inner_fold IS NOT DISTINCT FROM p.inner_fold AND r.attempt = p.attempt
"""


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
    renamed: Mapping[str, str],
) -> None:
    """``name`` as a view (or table) over ``files``; typed and empty when there are none.

    Files covered by one of ``snapshots`` are read from the snapshot instead (minus its stale
    sources), so the view holds exactly the rows of ``files``, whichever way they are read.
    Object-store rows are read into memory, so there ``name`` is always a table. Columns older
    files hold under an old name (``renamed``: old -> current) are read under the current one.
    """
    covered = set().union(*(snapshot.covers for snapshot in snapshots))
    direct = [path for path in files if path not in covered]
    con.register(f"_{name}_arrow", schema.empty_table())
    con.execute(f"CREATE OR REPLACE TABLE _{name}_empty AS SELECT * FROM _{name}_arrow")
    con.unregister(f"_{name}_arrow")
    typed = f"SELECT * FROM _{name}_empty"  # every column of this schema, typed: older files lack the newer ones
    if not direct and not snapshots:
        con.execute(f"CREATE OR REPLACE {'TABLE' if materialize else 'VIEW'} {name} AS {typed}")
        return
    kind = "TABLE" if materialize or not location.is_local else "VIEW"
    with rows_query(
        con, location, files=direct, snapshots=snapshots, uniform=uniform, sources=False, renamed=renamed
    ) as query:
        con.execute(f"CREATE OR REPLACE {kind} {name} AS {typed} UNION ALL BY NAME {query}")


@dataclass
class Leaderboard:
    """A DuckDB connection with the leaderboard views, and the scan it was built from.

    Views: ``fold_rows`` (every row of every good part file), ``trials`` (trial status files),
    ``runs`` (latest attempt per (experiment, trial_id, fold), pruned trials' rows marked
    ``pruned``), ``genotypes``, ``trial_scores`` and ``config_scores`` (search rows, see
    ``summary_sql``), ``cross_eval`` (cross-eval rows, see ``leaderboard.cross_eval``) and
    ``predictions`` (each utterance a run of ``runs`` scored, ``leaderboard.predictions``).
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

    def summary(
        self, by: Summary = "genotype", *, where: str | None = None, top: int | None = None, rank_by: RankBy = "valid"
    ) -> pd.DataFrame:
        """Ranked entries per experiment (``top`` best of each), complete entries first, by mean
        validation UA (``rank_by="test"``: by test UA, optimistic)."""
        if top is not None and top < 1:
            raise ValueError(f"top must be >= 1, but got {top}.")
        limit = f" WHERE rank <= {int(top)}" if top is not None else ""
        query = summary_sql(by, where=where, rank_by=rank_by)
        return self.sql(f"SELECT * FROM ({query}){limit} ORDER BY experiment, rank")

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
            compact_scanned(location, scan, grace_seconds=SNAPSHOT_GRACE_SECONDS)
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
        for name, files, schema, uniform, snapshots, renamed in (
            ("fold_rows", scan.parts, SCHEMA, scan.parts_uniform, scan.snapshots, RENAMED_COLUMNS),
            ("trials", scan.trial_files, TRIAL_SCHEMA, scan.trials_uniform, scan.trial_snapshots, {}),
            ("prediction_rows", scan.prediction_files, PREDICTION_SCHEMA, scan.predictions_uniform, (), {}),
        ):
            _create_source(
                con,
                name,
                files,
                schema,
                location=location,
                uniform=uniform,
                materialize=materialize,
                snapshots=snapshots,
                renamed=renamed,
            )
        con.execute(_RUNS_SQL)
        con.execute(_PREDICTIONS_SQL)
        for by, view in SUMMARY_VIEWS.items():
            con.execute(f"CREATE OR REPLACE VIEW {view} AS {summary_sql(by)}")
        con.execute(f"CREATE OR REPLACE VIEW cross_eval AS {CROSS_EVAL_SQL}")
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
