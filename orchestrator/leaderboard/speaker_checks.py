"""Folds that are not speaker-independent, said where people read results.

Every fold row carries its fold table's ``speaker_check`` (``trainers.folds``): ``independent``
when every speaker has one role, ``overlap`` when a test speaker also trains or validates (as in
some published single-fold splits), ``unknown`` when some speaker is not known. A search runs such
folds only when the user opted in (``folds.accept_speaker_overlap``), and their test UA is then
measured on speakers the networks may have learnt from: ``speaker_check_notes`` turns them into
one line per (experiment, stage, check) for ``sernas leaderboard`` and the report. Rows written
before schema 4 have null there: not known, so not flagged.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["SPEAKER_CHECK_SQL", "speaker_check_notes"]

SPEAKER_CHECK_SQL = """
SELECT experiment, stage, speaker_check, CAST(count(*) AS INTEGER) AS runs, list(DISTINCT fold ORDER BY fold) AS folds
FROM runs
WHERE speaker_check IS NOT NULL AND speaker_check <> 'independent'
GROUP BY ALL ORDER BY experiment, stage, speaker_check
"""
"""Per (experiment, stage, speaker check other than independent): the runs (latest attempts) and their folds."""

_MEANING = {
    "overlap": "a test speaker also trains or validates there (or a speaker has two roles), so its test UA is "
    "measured on speakers the networks learnt from: optimistic",
    "unknown": "some of its speakers are unknown, so nobody can say whether its test speakers also trained",
}


def speaker_check_notes(board: Any, *, experiment: str | None = None) -> list[str]:
    """One sentence per group of runs (of ``experiment``, or all) on folds that are not speaker-independent."""
    frame: pd.DataFrame = board.sql(SPEAKER_CHECK_SQL)
    if experiment is not None:
        frame = frame[frame["experiment"] == experiment]
    notes = []
    for row in frame.itertuples():
        folds = ", ".join(str(int(fold)) for fold in row.folds)
        meaning = _MEANING.get(str(row.speaker_check), "it is not speaker-independent")
        notes.append(
            f"{row.experiment}: {row.runs} {row.stage} run(s) on fold {folds}, whose speaker check is "
            f"{row.speaker_check}: {meaning} (fold table column speaker_check; docs/data.md)."
        )
    return notes
