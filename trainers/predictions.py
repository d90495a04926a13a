"""Each evaluated utterance's prediction: what pooled metrics, per-speaker UA and intervals need.

Fold-level figures (one UA per fold) allow neither a pooled UA over a protocol's test
utterances, nor per-speaker UA, nor an interval that resamples speakers. So every evaluation
keeps, per validation (at the chosen epoch) and test utterance: its id, speaker, true class,
predicted class and class probabilities. This module owns those columns; ``run_fold`` writes
them to ``predictions.parquet`` in its work folder and a trial adds them to the leaderboard
(``orchestrator.leaderboard.predictions``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from trainers.fold_data import FoldData, Split

__all__ = ["PREDICTION_COLUMNS", "PREDICTIONS_NAME", "prediction_frame"]

PREDICTIONS_NAME = "predictions.parquet"  # in a run-fold work folder, beside result.json
PREDICTION_COLUMNS = ("split", "utt_id", "speaker", "label", "predicted", "probabilities")
"""``split`` (``valid``/``test``), ``utt_id``, ``speaker``, ``label`` (true class name),
``predicted`` (class name of the highest probability), ``probabilities`` (float32 per class, in
the fold's class order)."""


def _split_frame(name: str, split: Split, probabilities: torch.Tensor, classes: tuple[str, ...]) -> pd.DataFrame:
    if probabilities.shape != (len(split), len(classes)):
        raise ValueError(
            f"{name}: {tuple(probabilities.shape)} probabilities for {len(split)} utterances and {len(classes)} classes"
        )
    names = np.asarray(classes, dtype=object)
    probs = probabilities.to(torch.float32).numpy()  # (N, K)
    return pd.DataFrame(
        {
            "split": name,
            "utt_id": list(split.utt_ids),
            "speaker": list(split.speakers) if split.speakers else [None] * len(split),
            "label": names[split.y.numpy()] if len(split) else [],
            "predicted": names[probs.argmax(axis=1)] if len(split) else [],
            "probabilities": list(probs),
        },
        columns=list(PREDICTION_COLUMNS),
    )


def prediction_frame(data: FoldData, probabilities: Mapping[str, torch.Tensor | None]) -> pd.DataFrame:
    """One row per utterance of the splits named in ``probabilities`` (``valid``, ``test``) that
    have them (``(N, K)`` in split order; None: not kept, e.g. an evaluation resumed from an
    older checkpoint), in split then utterance order."""
    parts = [
        _split_frame(name, getattr(data, name), probs, data.classes)
        for name, probs in probabilities.items()
        if probs is not None
    ]
    if not parts:
        return pd.DataFrame({column: [] for column in PREDICTION_COLUMNS})
    return pd.concat(parts, ignore_index=True)
