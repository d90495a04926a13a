"""Cross-eval entries from their predictions: pooled test UA with a speaker-bootstrap interval, and
each genotype against the baseline with speakers as the unit, Holm-corrected per experiment.

``cross_eval_summary`` adds these columns to the ``cross_eval`` view's rows (``SPEAKER_COLUMNS``);
the statistics themselves are ``orchestrator.statistics``. An entry without stored predictions
(rows written before they were) gets nulls and says so in ``speaker_note``.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from orchestrator.statistics import holm, paired_comparison, pooled_metrics

__all__ = ["SPEAKER_COLUMNS", "add_speaker_statistics"]

SPEAKER_COLUMNS = (
    "pooled_test_ua",
    "pooled_test_ua_low",
    "pooled_test_ua_high",
    "test_speakers",
    "diff_vs_baseline",
    "diff_low",
    "diff_high",
    "speaker_p",
    "speaker_p_holm",
    "speaker_note",
)
"""Pooled test UA and its 95% speaker-bootstrap interval; the pooled UA difference from the
baseline on the utterances both scored, its paired interval, the two-sided speaker-swap
permutation p and its Holm adjustment over the experiment's genotypes; a note when any is missing."""

_PREDICTIONS_SQL = """
SELECT experiment, genotype_hash, params_json AS settings, fold, seed, utt_id, speaker, label, predicted, classes
FROM predictions WHERE stage = 'cross-eval' AND split = 'test' AND status = 'completed'
"""


def add_speaker_statistics(board: Any, frame: pd.DataFrame, *, baseline: str) -> pd.DataFrame:
    """``frame`` (rows of the ``cross_eval`` view) with ``SPEAKER_COLUMNS`` added.

    ``baseline`` is the reference's ``genotype_hash``; a genotype is compared only with the
    baseline's runs under its own settings (the same ``params_json``, as the view pairs them).
    """
    predictions: pd.DataFrame = board.sql(_PREDICTIONS_SQL)
    values: dict[str, list[Any]] = {column: [] for column in SPEAKER_COLUMNS}
    groups = dict(iter(predictions.groupby(["experiment", "genotype_hash"])))
    for row in frame.itertuples():
        mine = groups.get((row.experiment, row.genotype_hash))
        reference = groups.get((row.experiment, baseline))
        if reference is not None and mine is not None:
            reference = reference[reference["settings"].isin(set(mine["settings"]))]
            reference = None if reference.empty else reference
        pooled = comparison = None
        note = ""
        if mine is None:
            note = "no stored predictions"
        else:
            classes = json.loads(mine["classes"].iloc[0])
            pooled = pooled_metrics(mine, classes)
            if row.genotype_hash == baseline:
                note = "the baseline"
            elif reference is None:
                note = "no baseline predictions under its settings"
            else:
                comparison = paired_comparison(mine, reference, classes)
                note = "no shared test utterances" if comparison is None else comparison.method
        values["pooled_test_ua"].append(None if pooled is None else pooled.ua)
        values["pooled_test_ua_low"].append(None if pooled is None else pooled.ua_interval[0])
        values["pooled_test_ua_high"].append(None if pooled is None else pooled.ua_interval[1])
        values["test_speakers"].append(None if pooled is None else pooled.speakers)
        values["diff_vs_baseline"].append(None if comparison is None else comparison.diff)
        values["diff_low"].append(None if comparison is None else comparison.interval[0])
        values["diff_high"].append(None if comparison is None else comparison.interval[1])
        values["speaker_p"].append(None if comparison is None else comparison.p)
        values["speaker_note"].append(note)
    values["speaker_p_holm"] = [None] * len(frame)
    experiments = frame["experiment"].tolist()
    for experiment in dict.fromkeys(experiments):
        where = [i for i, name in enumerate(experiments) if name == experiment]
        for i, adjusted in zip(where, holm([values["speaker_p"][i] for i in where])):
            values["speaker_p_holm"][i] = adjusted
    out = frame.copy()
    for column in SPEAKER_COLUMNS:
        dtype = "object" if column == "speaker_note" else "float64"
        out[column] = pd.Series(values[column], index=frame.index, dtype=dtype)
    return out
