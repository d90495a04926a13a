"""Runs whose test or validation speakers lack a protocol class, said where people read results.

UA and macro-F1 average over every class of the protocol (``trainers.metrics``): a class with no
utterance in a split counts as recall 0 there, which caps that split's UA. Fold rows record such
classes (``test_absent_classes``, ``valid_absent_classes``); ``absent_class_notes`` turns them
into one line per (experiment, stage, split, classes) for ``sernas leaderboard`` and the report.
Rows written before schema 4 have null there: not known, so not flagged.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

__all__ = ["ABSENT_CLASSES_SQL", "absent_class_notes"]

ABSENT_CLASSES_SQL = """
WITH flagged AS (
    SELECT experiment, stage, fold, 'test' AS split, test_absent_classes AS absent FROM runs
    WHERE status IN ('completed', 'pruned') AND test_absent_classes IS NOT NULL AND test_absent_classes <> '[]'
    UNION ALL
    SELECT experiment, stage, fold, 'validation' AS split, valid_absent_classes AS absent FROM runs
    WHERE status IN ('completed', 'pruned') AND valid_absent_classes IS NOT NULL AND valid_absent_classes <> '[]'
)
SELECT experiment, stage, split, absent, CAST(count(*) AS INTEGER) AS runs, list(DISTINCT fold ORDER BY fold) AS folds
FROM flagged GROUP BY ALL ORDER BY experiment, stage, split, absent  -- test before validation
"""
"""Per (experiment, stage, split, absent classes): the runs (latest attempts) and their folds."""


def absent_class_notes(board: Any, *, experiment: str | None = None) -> list[str]:
    """One sentence per group of runs (of ``experiment``, or all) whose test or validation split lacked a class."""
    frame: pd.DataFrame = board.sql(ABSENT_CLASSES_SQL)
    if experiment is not None:
        frame = frame[frame["experiment"] == experiment]
    notes = []
    for row in frame.itertuples():
        classes = ", ".join(json.loads(row.absent))
        folds = ", ".join(str(int(fold)) for fold in row.folds)
        notes.append(
            f"{row.experiment}: {row.runs} {row.stage} run(s) (fold {folds}) had no {row.split} utterance of "
            f"class {classes}: it counts as recall 0 in their {row.split} UA (and F1 0 in macro-F1); see "
            "docs/leaderboard.md, Metrics."
        )
    return notes
