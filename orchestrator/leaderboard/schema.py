"""The leaderboard's columns: the typed fold row, the trial status columns, the schema version.

``FoldRow`` is the one statement of the fold-row schema: each field is a column, in file
order, and carries its Arrow type, whether it may be null, what it means, the schema version
that added it and the name it had before a version renamed it. ``SCHEMA``, ``COLUMN_DOCS``,
``ADDED_COLUMNS``, ``RENAMED_COLUMNS`` and the table in docs/leaderboard.md (checked by a test)
all follow from it.

Versions: 2 added the cross-eval columns, 3 nested selection and the evaluated network's
settings, 4 renamed the test figures ``ua``, ``wa``, ``macro_f1`` to ``test_ua``, ``test_wa``,
``test_macro_f1`` (files written before are read under the new names) and added
``test_absent_classes`` / ``valid_absent_classes``, ``control`` and ``speaker_check``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import pyarrow as pa

__all__ = [
    "COLUMN_DOCS",
    "FOLD_COLUMNS",
    "FOLD_STATUSES",
    "RESULT_COLUMNS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "STAGES",
    "TRIAL_COLUMNS",
    "TRIAL_SCHEMA",
    "TRIAL_STATUSES",
    "ADDED_COLUMNS",
    "RENAMED_COLUMNS",
    "Column",
    "FoldRow",
]

SCHEMA_VERSION = 4
STAGES = ("search", "cross-eval")
"""``search``: a trial searched the fold's genotype; ``cross-eval``: a chosen one retrained (sernas cross-eval)."""
FOLD_STATUSES = ("completed", "failed")
TRIAL_STATUSES = ("running", "completed", "pruned", "failed", "terminated")
METADATA_KEY = b"sernas.leaderboard.schema_version"


class Column(NamedTuple):
    name: str
    type: pa.DataType
    required: bool  # never null
    doc: str


def _column(
    kind: pa.DataType,
    doc: str,
    *,
    required: bool = False,
    result: bool = False,
    since: int = 1,
    formerly: str | None = None,
    **options: Any,
) -> Any:
    """A ``FoldRow`` field that is also a column; ``result`` marks what only a finished fold has,
    ``since`` the schema version that added it (files written before lack it), ``formerly`` the
    name files written before its rename hold it under (read as this column)."""
    metadata = {"type": kind, "required": required, "result": result, "since": since, "formerly": formerly, "doc": doc}
    return field(metadata=metadata, **options)


@dataclass(frozen=True, kw_only=True)
class FoldRow:
    """One leaderboard row per (trial, fold, inner fold, attempt): the fields are the columns, in file order.

    Build one with ``finished`` or ``failed``. Values are checked when the row is written
    (``write_fold_row``), which names the column of a bad value. JSON columns take JSON text
    or the Python value; ``written_at`` left None is the time of writing.
    """

    schema_version: int = _column(
        pa.int32(), "version of this schema the row was written with (4)", required=True, default=SCHEMA_VERSION
    )
    experiment: str = _column(pa.string(), "experiment name", required=True)
    trial_id: str = _column(pa.string(), "Ray Tune trial id: one point of the search space", required=True)
    fold: int = _column(pa.int32(), "speaker-independent (outer) fold, numbered from 1", required=True)
    outer_fold: int | None = _column(
        pa.int32(),
        "the outer test fold of the row (equal to `fold`): a search trial belongs to this fold's Optuna study; "
        "null in rows written before schema 3",
        since=3,
        default=None,
    )
    inner_fold: int | None = _column(
        pa.int32(),
        "inner speaker fold (`folds.inner`) whose validation speakers scored this network, numbered from 1; null "
        "with a single validation split (the outer fold's) and in cross-eval rows",
        since=3,
        default=None,
    )
    n_inner_folds: int | None = _column(
        pa.int32(),
        "inner folds a search trial runs on its outer fold (`folds.inner`); null with a single validation split",
        since=3,
        default=None,
    )
    n_folds: int = _column(pa.int32(), "number of outer folds the experiment runs", required=True)
    attempt: int = _column(
        pa.int32(),
        "attempt of this (trial, fold, inner fold): a trial's first run writes 1, a rerun the next",
        required=True,
    )
    status: str = _column(
        pa.string(), "`completed` or `failed` as written; `runs` reports `pruned` from the trial status", required=True
    )
    stage: str = _column(
        pa.string(),
        "`search` (a trial searched this fold's genotype) or `cross-eval` (a chosen genotype retrained, "
        "`sernas cross-eval`); version-1 rows read as `search`",
        required=True,
        since=2,
        default="search",
    )
    written_at: datetime | None = _column(
        pa.timestamp("us", tz="UTC"), "when the row was written (UTC, microseconds)", required=True, default=None
    )
    node_id: str = _column(pa.string(), "Ray node id (`local` outside Ray)", required=True)
    hostname: str = _column(pa.string(), "host that ran the fold", required=True)
    seed: int = _column(pa.int64(), "the trial's random seed", required=True)
    params_json: str | Mapping[str, Any] = _column(
        pa.string(), "the trial's sampled parameters, canonical JSON object (seed under the key `seed`)", required=True
    )
    layers: int | None = _column(
        pa.int32(),
        "cells of the configured shape (`eval.shape.layers`; the space's `layers` sets the search's too), before `deepen`",
    )
    nodes: int | None = _column(pa.int32(), "intermediate nodes per cell")
    init_channels: int | None = _column(pa.int32(), "first-cell channels of the configured shape, before `widen`")
    eval_layers: int | None = _column(
        pa.int32(),
        "cells of the network that was evaluated (`eval.shape.layers` + `eval.deepen`); null before schema 3",
        since=3,
        default=None,
    )
    eval_init_channels: int | None = _column(
        pa.int32(),
        "first-cell channels of the network that was evaluated (`eval.shape.init_channels` x `eval.widen`); null "
        "before schema 3",
        since=3,
        default=None,
    )
    normalization: str | None = _column(
        pa.string(), "input normalisation (`eval.normalization`); null before schema 3", since=3, default=None
    )
    widen: float | None = _column(pa.float64(), "`eval.widen`; null before schema 3", since=3, default=None)
    deepen: int | None = _column(pa.int32(), "`eval.deepen`; null before schema 3", since=3, default=None)
    imbalance: str | None = _column(
        pa.string(), "class-imbalance handling (`eval.imbalance`); null before schema 3", since=3, default=None
    )
    arch_data: str | None = _column(
        pa.string(),
        "what trains the alphas (`search.arch_data`); null without a search and before schema 3",
        since=3,
        default=None,
    )
    primitives: str | Sequence[str] | None = _column(
        pa.string(),
        "JSON list of the search space's candidate operations (`search.primitives`); null without a search and "
        "before schema 3",
        since=3,
        default=None,
    )
    lstm_hidden: int | None = _column(pa.int32(), "LSTM hidden units")
    darts_order: str | None = _column(pa.string(), "DARTS approximation: `first` or `second` order")
    pc_k: int | None = _column(pa.int32(), "PC-DARTS partial-channel factor K (1 = all channels)")
    weights_lr: float | None = _column(pa.float64(), "learning rate of the network weights")
    search_epochs: int | None = _column(pa.int32(), "configured search epochs")
    eval_epochs: int | None = _column(pa.int32(), "configured evaluation epochs")
    dataset: str = _column(
        pa.string(),
        "corpus: `iemocap`, `msp-improv`, `synthetic`, ...; cross-corpus folds: the fold's training corpora "
        "(`+`-joined) `->` its test corpus, e.g. `iemocap->msp-improv`",
        required=True,
    )
    feature_preset: str = _column(pa.string(), "feature preset, e.g. `paper-mfcc`", required=True)
    fold_scheme: str = _column(
        pa.string(),
        "`loso`, `speaker-pairs`, `given` (the folds of split files: EmoBox, s3prl, SpeechBrain) or `cross-corpus` "
        "(train on some corpora, test on another)",
        required=True,
    )
    speaker_check: str | None = _column(
        pa.string(),
        "the fold table's `speaker_check` of the (outer) fold: `independent` (every speaker has one role), `overlap` "
        "(a test speaker also trains or validates, or a speaker has two roles) or `unknown` (some speaker is not "
        "known); null before schema 4",
        since=4,
        default=None,
    )
    classes: str | Sequence[str] = _column(pa.string(), "JSON list of class names in label-index order", required=True)
    genotype: str | Mapping[str, Any] | None = _column(
        pa.string(), "canonical Genotype JSON; null for baseline models and failed rows", result=True
    )
    genotype_hash: str | None = _column(
        pa.string(),
        "12-hex hash of the genotype JSON, or a model name (`baseline`); required when completed",
        result=True,
    )
    source_trial_id: str | None = _column(
        pa.string(),
        "cross-eval rows: the search trial whose run (best validation UA) found the genotype",
        since=2,
        default=None,
    )
    source_fold: int | None = _column(
        pa.int32(),
        "cross-eval rows: the fold of that run; null for search rows and the baseline",
        since=2,
        default=None,
    )
    control: str | None = _column(
        pa.string(),
        "cross-eval rows: `random` for a random-architecture control (`sernas cross-eval --random K`: a genotype "
        "drawn uniformly from the experiment's own space, trained like the other candidates); null otherwise and "
        "before schema 4",
        since=4,
        default=None,
    )
    test_seen_in_search: bool | None = _column(
        pa.bool_(),
        "cross-eval rows: whether a search that found the genotype trained or validated on this fold's test "
        "speakers (its cross-eval test UA is then optimistic); null for search rows, the baseline and "
        "genotypes no search found",
        since=2,
        default=None,
    )
    test_ua: float | None = _column(
        pa.float64(),
        "test unweighted accuracy (mean recall over every protocol class; an absent class counts 0), fraction; "
        "required when completed; `ua` in files before schema 4 (read under this name)",
        result=True,
        formerly="ua",
    )
    test_wa: float | None = _column(
        pa.float64(),
        "test weighted accuracy (plain accuracy), fraction; required when completed; `wa` before schema 4",
        result=True,
        formerly="wa",
    )
    test_macro_f1: float | None = _column(
        pa.float64(),
        "test macro-F1 (mean F1 over every protocol class), fraction; required when completed; `macro_f1` before "
        "schema 4",
        result=True,
        formerly="macro_f1",
    )
    confusion: str | Sequence[Sequence[int]] | None = _column(
        pa.string(), "JSON test confusion matrix, rows = true class, columns = predicted, counts", result=True
    )
    test_utterances: int | None = _column(pa.int32(), "test utterances evaluated (each exactly once)", result=True)
    test_absent_classes: str | Sequence[str] | None = _column(
        pa.string(),
        "JSON list of the classes (names) with no utterance among the test speakers: their recall counts 0 in "
        "`test_ua`; `[]` when every class is present; null in failed rows and before schema 4",
        result=True,
        since=4,
        default=None,
    )
    valid_ua: float | None = _column(
        pa.float64(), "UA on the validation speakers at the selected epoch, fraction", result=True
    )
    valid_absent_classes: str | Sequence[str] | None = _column(
        pa.string(),
        "JSON list of the classes (names) with no utterance among the validation speakers (recall 0 in "
        "`valid_ua`); `[]` when every class is present; null in failed rows and before schema 4",
        result=True,
        since=4,
        default=None,
    )
    best_epoch: int | None = _column(pa.int32(), "evaluation epoch selected on the validation speakers", result=True)
    params: int | None = _column(pa.int64(), "trainable parameters of the evaluated network (count)", result=True)
    search_seconds: float | None = _column(
        pa.float64(), "wall-clock seconds of the DARTS search (0 without one)", result=True
    )
    eval_seconds: float | None = _column(pa.float64(), "wall-clock seconds of the evaluation training", result=True)
    search_epochs_run: int | None = _column(
        pa.int32(), "search epochs actually run (fewer if stopped early)", result=True
    )
    search_stop_reason: str | None = _column(
        pa.string(),
        "why the search ended: `epochs` (all run), or the collapse guard's verdict (`collapsed after epoch N: ...`); "
        "null without a search",
        result=True,
        since=2,
        default=None,
    )
    alpha_entropy: float | None = _column(
        pa.float64(),
        "mean entropy of the softmaxed alphas at the end of the search (nats; low: the cell has decided); "
        "null without a search",
        result=True,
        since=2,
        default=None,
    )
    device: str | None = _column(pa.string(), "torch device the fold ran on: `cpu`, `cuda:0`, ...", result=True)
    peak_gpu_mib: float | None = _column(
        pa.float64(),
        "most GPU memory the fold's process held in torch's allocator (MiB), also on failed rows (out of memory); "
        "null on the CPU and in rows written before this column",
        since=2,
        default=None,
    )
    error: str | None = _column(pa.string(), "error message; null unless `status = failed`")

    @classmethod
    def finished(cls, **columns: Any) -> FoldRow:
        """A completed fold: every column but ``status`` and ``error`` (which is None)."""
        return cls(status="completed", error=None, **columns)

    @classmethod
    def failed(cls, *, error: str, **columns: Any) -> FoldRow:
        """A failed fold: the result columns are None, so only the trial's facts are given."""
        return cls(status="failed", error=error, **dict.fromkeys(RESULT_COLUMNS), **columns)

    def to_dict(self) -> dict[str, Any]:
        """Column -> value, without ``written_at`` while it is None (the writer stamps it)."""
        row = {name: getattr(self, name) for name in SCHEMA.names}
        if row["written_at"] is None:
            del row["written_at"]
        return row


FOLD_COLUMNS = tuple(
    Column(f.name, f.metadata["type"], f.metadata["required"], f.metadata["doc"]) for f in dataclasses.fields(FoldRow)
)
RESULT_COLUMNS = tuple(f.name for f in dataclasses.fields(FoldRow) if f.metadata["result"])
"""What only a finished fold has: None in a failed row."""
ADDED_COLUMNS = {f.name: f.metadata["since"] for f in dataclasses.fields(FoldRow) if f.metadata["since"] > 1}
"""Column -> the schema version that added it: files of older versions lack it (read as null)."""
RENAMED_COLUMNS = {f.metadata["formerly"]: f.name for f in dataclasses.fields(FoldRow) if f.metadata["formerly"]}
"""Old name -> column: files written before the rename hold the column under its old name, which
every reader takes as the new one (``leaderboard.sources``)."""
TRIAL_COLUMNS = (
    Column("schema_version", pa.int32(), True, "version of this schema (4; unchanged since 1)"),
    Column("experiment", pa.string(), True, "experiment name"),
    Column("trial_id", pa.string(), True, "Ray Tune trial id"),
    Column("status", pa.string(), True, "`running`, `completed`, `pruned`, `failed` or `terminated`"),
    Column("step", pa.int64(), True, "last step the trial reported (the pruner's step when pruned)"),
    Column("reason", pa.string(), False, "why the trial was pruned, failed or terminated"),
    Column("params_json", pa.string(), False, "the trial's sampled parameters, canonical JSON object"),
    Column("updated_at", pa.timestamp("us", tz="UTC"), True, "when this status was written (UTC)"),
)


def _schema(columns: Sequence[Column]) -> pa.Schema:
    return pa.schema(
        [pa.field(c.name, c.type, nullable=not c.required) for c in columns],
        metadata={METADATA_KEY: str(SCHEMA_VERSION).encode()},
    )


SCHEMA = _schema(FOLD_COLUMNS)
"""One leaderboard row per (trial, fold, attempt)."""
TRIAL_SCHEMA = _schema(TRIAL_COLUMNS)
"""One status row per trial."""
COLUMN_DOCS = {"fold_rows": {c.name: c.doc for c in FOLD_COLUMNS}, "trials": {c.name: c.doc for c in TRIAL_COLUMNS}}
"""View -> column -> meaning, as docs/leaderboard.md states it (a test holds the two together)."""
