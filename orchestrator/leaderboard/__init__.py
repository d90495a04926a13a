"""The leaderboard: one immutable Parquet part file per (trial, fold, attempt), read with DuckDB.

Layout under a storage root (a local path or a URI that ``pyarrow.fs`` understands)::

    <storage>/leaderboard/<experiment>/<trial_id>/fold=<k>[-inner=<i>]-attempt=<a>.parquet   one fold row
    <storage>/trials/<experiment>/<trial_id>.parquet                             trial status
    <storage>/predictions/<experiment>/<trial_id>/<stage>-fold=<k>[-inner=<i>]-attempt=<a>.parquet  per utterance
    <storage>/.leaderboard-cache/footers.parquet                                 footer-check cache
    <storage>/.leaderboard-cache/snapshots/<kind>/<experiment>/<seq>-<id>.parquet compacted rows (a cache)

One module per concept: ``schema`` (the typed ``FoldRow``, columns, version), ``validation``
(checking rows), ``predictions`` (per-utterance predictions), ``parts`` (file locations, atomic writes), ``footers`` (the footer-check
cache), ``scan`` (listing good and damaged files), ``sources`` (rows of files as a DuckDB
query, local or object store), ``snapshots`` (compaction), ``views`` (``connect``, the
rankings), ``cross_eval`` (the cross-eval view) and ``absent_classes`` (runs whose splits lack a
class) and ``speaker_checks`` (runs on folds that are not speaker-independent). This package re-exports their public names.
"""

from __future__ import annotations

from orchestrator.leaderboard.absent_classes import ABSENT_CLASSES_SQL, absent_class_notes
from orchestrator.leaderboard.cross_eval import BASELINE, CROSS_EVAL_SQL, cross_eval_summary
from orchestrator.leaderboard.parts import (
    CACHE_DIR,
    LEADERBOARD_DIR,
    SNAPSHOT_DIR,
    TRIALS_DIR,
    LeaderboardWriteError,
    list_experiments,
    part_path,
    trial_status_path,
    write_fold_row,
    write_trial_status,
)
from orchestrator.leaderboard.predictions import (
    PREDICTION_SCHEMA,
    PREDICTION_SPLITS,
    PREDICTIONS_DIR,
    predictions_path,
    write_predictions,
)
from orchestrator.leaderboard.scan import DamagedFile, PartScan, Snapshot, scan_parts
from orchestrator.leaderboard.schema import (
    COLUMN_DOCS,
    FOLD_STATUSES,
    RENAMED_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    STAGES,
    TRIAL_SCHEMA,
    TRIAL_STATUSES,
    FoldRow,
)
from orchestrator.leaderboard.search_value import SearchVerdict, search_verdicts
from orchestrator.leaderboard.snapshots import SNAPSHOT_GRACE_SECONDS, Compaction, compact
from orchestrator.leaderboard.sources import SOURCE_COLUMN
from orchestrator.leaderboard.speaker_checks import SPEAKER_CHECK_SQL, speaker_check_notes
from orchestrator.leaderboard.views import (
    AUTO_COMPACT_FILES,
    SUMMARY_VIEWS,
    Leaderboard,
    Summary,
    connect,
    summary_sql,
    top_genotypes,
)
from orchestrator.storage import StorageLocation, resolve_storage

__all__ = [
    "SearchVerdict",
    "search_verdicts",
    "PREDICTION_SCHEMA",
    "PREDICTION_SPLITS",
    "PREDICTIONS_DIR",
    "predictions_path",
    "write_predictions",
    "ABSENT_CLASSES_SQL",
    "BASELINE",
    "RENAMED_COLUMNS",
    "absent_class_notes",
    "SPEAKER_CHECK_SQL",
    "speaker_check_notes",
    "CROSS_EVAL_SQL",
    "STAGES",
    "cross_eval_summary",
    "SCHEMA",
    "SCHEMA_VERSION",
    "TRIAL_SCHEMA",
    "COLUMN_DOCS",
    "FOLD_STATUSES",
    "TRIAL_STATUSES",
    "AUTO_COMPACT_FILES",
    "CACHE_DIR",
    "LEADERBOARD_DIR",
    "SNAPSHOT_GRACE_SECONDS",
    "SOURCE_COLUMN",
    "TRIALS_DIR",
    "Compaction",
    "DamagedFile",
    "FoldRow",
    "Leaderboard",
    "LeaderboardWriteError",
    "PartScan",
    "SNAPSHOT_DIR",
    "Snapshot",
    "StorageLocation",
    "SUMMARY_VIEWS",
    "Summary",
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
