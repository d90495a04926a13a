"""Per-utterance predictions beside the fold rows: one Parquet file per (trial, fold, inner fold, attempt).

    <storage>/predictions/<experiment>/<trial_id>/<stage>-fold=<k>[-inner=<i>]-attempt=<a>.parquet

A trial writes a network's predictions (``trainers.predictions``: every validation utterance at
the chosen epoch and every test utterance, with class probabilities) *before* its fold row, with
the same atomic write, so a fold row always has its predictions and a killed trial leaves at most
a file that no row points to (the ``predictions`` view joins on the row's attempt and drops it).
A rerun of the same attempt replaces the file whole. The ``predictions`` view (``views.connect``)
holds the rows of the attempts the ``runs`` view reports, with the run's genotype, seed and stage.

Size: a row is ~40 bytes plus 4 per class before compression; ``benchmarks/bench_leaderboard.py``
measures the file size and write time per 1,000 utterances.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa

from orchestrator.leaderboard.parts import write_parquet
from orchestrator.leaderboard.schema import METADATA_KEY, SCHEMA_VERSION, STAGES
from orchestrator.storage import StorageLocation, resolve_storage
from trainers.predictions import PREDICTION_COLUMNS

__all__ = ["PREDICTIONS_DIR", "PREDICTION_SCHEMA", "PREDICTION_SPLITS", "predictions_path", "write_predictions"]

PREDICTIONS_DIR = "predictions"
PREDICTION_SPLITS = ("valid", "test")
_KEYS = (
    pa.field("experiment", pa.string(), nullable=False),
    pa.field("stage", pa.string(), nullable=False),
    pa.field("trial_id", pa.string(), nullable=False),
    pa.field("fold", pa.int32(), nullable=False),
    pa.field("inner_fold", pa.int32()),
    pa.field("attempt", pa.int32(), nullable=False),
)
_VALUES = {
    "split": pa.field("split", pa.string(), nullable=False),
    "utt_id": pa.field("utt_id", pa.string(), nullable=False),
    "speaker": pa.field("speaker", pa.string()),
    "label": pa.field("label", pa.string(), nullable=False),
    "predicted": pa.field("predicted", pa.string(), nullable=False),
    # Parquet names a list's items "element": so does the schema, or files would not match it when read back
    "probabilities": pa.field("probabilities", pa.list_(pa.field("element", pa.float32())), nullable=False),
}
PREDICTION_SCHEMA = pa.schema(
    [*_KEYS, *(_VALUES[name] for name in PREDICTION_COLUMNS)],
    metadata={METADATA_KEY: str(SCHEMA_VERSION).encode()},
)
"""One row per evaluated utterance of one network; keys match the fold row (``runs``) it belongs to."""


def predictions_path(
    *, experiment: str, stage: str, trial_id: str, fold: int, attempt: int, inner_fold: int | None = None
) -> str:
    """Path of a network's predictions file, relative to the storage root."""
    inner = "" if inner_fold is None else f"-inner={inner_fold}"
    return f"{PREDICTIONS_DIR}/{experiment}/{trial_id}/{stage}-fold={fold}{inner}-attempt={attempt}.parquet"


def write_predictions(
    storage: str | os.PathLike[str] | StorageLocation,
    frame: pd.DataFrame,
    *,
    experiment: str,
    stage: str,
    trial_id: str,
    fold: int,
    attempt: int,
    inner_fold: int | None = None,
) -> str:
    """Write one network's predictions (``frame``: ``trainers.predictions.PREDICTION_COLUMNS``)
    atomically under the keys of its fold row; return the file's path."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}, but got {stage!r}")
    missing = [column for column in PREDICTION_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"predictions lack the column(s) {', '.join(missing)}")
    splits = set(frame["split"]) - set(PREDICTION_SPLITS)
    if splits:
        raise ValueError(f"predictions of unknown split(s) {sorted(splits)}; expected {', '.join(PREDICTION_SPLITS)}")
    keys = {
        "experiment": experiment,
        "stage": stage,
        "trial_id": trial_id,
        "fold": fold,
        "inner_fold": inner_fold,
        "attempt": attempt,
    }
    n = len(frame)
    columns = {name: pa.array([value] * n, PREDICTION_SCHEMA.field(name).type) for name, value in keys.items()}
    for name in PREDICTION_COLUMNS:
        if name != "probabilities":
            columns[name] = pa.array(frame[name], PREDICTION_SCHEMA.field(name).type)
    probabilities = np.stack(frame["probabilities"].to_numpy()).astype(np.float32) if n else np.empty((0, 0))
    width = probabilities.shape[1] if n else 0
    columns["probabilities"] = pa.ListArray.from_arrays(  # (n, K) as n lists of K float32, without a Python loop
        pa.array(np.arange(0, n * width + 1, max(width, 1), dtype=np.int32)[: n + 1]),
        pa.array(probabilities.reshape(-1), pa.float32()),
        type=PREDICTION_SCHEMA.field("probabilities").type,
    )
    table = pa.Table.from_pydict(columns, schema=PREDICTION_SCHEMA)
    inner = "" if inner_fold is None else f" inner fold {inner_fold}"
    return write_parquet(
        resolve_storage(storage),
        predictions_path(**keys),
        table,
        what=f"the predictions of trial {trial_id} fold {fold}{inner} attempt {attempt}",
    )
