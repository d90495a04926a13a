"""The ``cross_eval`` view: genotypes retrained on every fold (``sernas cross-eval``), aggregated.

Only ``stage = 'cross-eval'`` rows count here, and only search rows count in the search views
(``genotypes``, ``trial_scores``, ``config_scores``, the nested estimate), so no fold is counted
twice. A (genotype, fold, seed) run more than once counts once (its mean). Entries rank by mean
validation UA within each experiment, complete ones (every fold covered) first; test UA sits
beside it. When the hand-made baseline was cross-evaluated too, every genotype is compared with
it on the (fold, seed) pairs both have under the same settings (the same ``params_json``: the
space parameters a cross-eval run trained under, ``{}`` for the experiment's base settings): mean
test UA difference, and a Wilcoxon signed-rank p-value over folds (two-sided; each fold's seeds
averaged first, since seeds share the fold's test speakers; computed in Python by
``cross_eval_summary``), and from the stored predictions the speaker-level figures of
``leaderboard.comparisons`` (pooled UA with its interval, the difference with its interval, a
speaker permutation p, Holm-corrected). A baseline trained under other settings is never its reference. (With
``sernas cross-eval --settings source`` the baseline runs under several settings, one per source
trial; its own entry pools them all.)
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from orchestrator.leaderboard.comparisons import add_speaker_statistics
from search_space.architecture import NamedModel, architecture_key

__all__ = [
    "BASELINE",
    "CROSS_EVAL_COLUMNS",
    "CROSS_EVAL_SQL",
    "PAIRS_SQL",
    "cross_eval_summary",
    "wilcoxon_vs_baseline",
]

BASELINE = architecture_key(NamedModel("baseline"))  # the genotype_hash of the hand-made CNN-LSTM
CROSS_EVAL_COLUMNS = (
    "rank",
    "experiment",
    "genotype_hash",
    "random_control",
    "mean_valid_ua",
    "std_valid_ua",
    "mean_test_ua",
    "std_test_ua",
    "folds_covered",
    "n_folds",
    "seeds",
    "seen_folds",
    "mean_params",
    "baseline_pairs",
    "mean_diff_vs_baseline",
    "wilcoxon_p",
    "wilcoxon_note",
    "pooled_test_ua",
    "pooled_test_ua_low",
    "pooled_test_ua_high",
    "diff_vs_baseline",
    "diff_low",
    "diff_high",
    "speaker_p",
    "speaker_p_holm",
)
"""What tables show of ``cross_eval_summary`` (the CLI's ``--by cross-eval`` and the report)."""

_PER_PAIR = """
per_pair AS (  -- one value per (genotype, settings, fold, seed): a rerun counts once
    SELECT experiment, genotype_hash, params_json AS settings, fold, seed, avg(test_ua) AS test_ua,
           avg(valid_ua) AS valid_ua, avg(test_wa) AS test_wa, avg(test_macro_f1) AS test_macro_f1,
           bool_or(test_seen_in_search) AS seen
    FROM runs WHERE stage = 'cross-eval' AND status = 'completed' AND test_ua IS NOT NULL
    GROUP BY ALL
)"""

CROSS_EVAL_SQL = f"""
WITH {_PER_PAIR},
entries AS (
    SELECT experiment, genotype_hash, avg(valid_ua) AS mean_valid_ua, stddev_samp(valid_ua) AS std_valid_ua,
           avg(test_ua) AS mean_test_ua, stddev_samp(test_ua) AS std_test_ua, avg(test_wa) AS mean_test_wa,
           avg(test_macro_f1) AS mean_test_macro_f1,
           CAST(count(DISTINCT fold) AS INTEGER) AS folds_covered, CAST(count(DISTINCT seed) AS INTEGER) AS seeds,
           CAST(count(*) AS INTEGER) AS pairs,
           CAST(count(DISTINCT fold) FILTER (WHERE seen) AS INTEGER) AS seen_folds
    FROM per_pair GROUP BY ALL
),
facts AS (
    SELECT experiment, genotype_hash, max(n_folds) AS n_folds, avg(params) AS mean_params,
           any_value(source_trial_id) AS source_trial_id, any_value(source_fold) AS source_fold,
           any_value(genotype) AS genotype, count(*) AS runs, sum(coalesce(eval_seconds, 0)) AS total_seconds,
           coalesce(bool_or(control = 'random'), false) AS random_control
    FROM runs WHERE stage = 'cross-eval' AND status = 'completed' AND test_ua IS NOT NULL
    GROUP BY ALL
),
paired AS (  -- the shared (fold, seed) pairs with the baseline trained under the same settings
    SELECT p.experiment, p.genotype_hash, CAST(count(*) AS INTEGER) AS baseline_pairs,
           avg(p.test_ua - b.test_ua) AS mean_diff_vs_baseline
    FROM per_pair AS p
    JOIN per_pair AS b ON b.genotype_hash = '{BASELINE}' AND b.experiment = p.experiment AND b.fold = p.fold
                          AND b.seed = p.seed AND b.settings = p.settings
    WHERE p.genotype_hash <> '{BASELINE}'
    GROUP BY ALL
)
SELECT CAST(row_number() OVER (PARTITION BY e.experiment
                               ORDER BY e.folds_covered >= f.n_folds DESC, e.mean_valid_ua DESC NULLS LAST,
                                        e.folds_covered DESC, e.genotype_hash) AS INTEGER) AS rank,
       e.*, f.n_folds, e.folds_covered >= f.n_folds AS complete,
       f.* EXCLUDE (experiment, genotype_hash, n_folds),
       coalesce(p.baseline_pairs, 0) AS baseline_pairs, p.mean_diff_vs_baseline
FROM entries AS e
JOIN facts AS f ON f.experiment = e.experiment AND f.genotype_hash = e.genotype_hash
LEFT JOIN paired AS p ON p.experiment = e.experiment AND p.genotype_hash = e.genotype_hash
"""
"""The SELECT behind the ``cross_eval`` view (ranked by mean validation UA; no p-value: see ``cross_eval_summary``)."""

PAIRS_SQL = f"""
WITH {_PER_PAIR}
SELECT p.experiment, p.genotype_hash, p.fold, p.seed, p.test_ua, b.test_ua AS baseline_test_ua
FROM per_pair AS p
JOIN per_pair AS b ON b.genotype_hash = '{BASELINE}' AND b.experiment = p.experiment AND b.fold = p.fold
                      AND b.seed = p.seed AND b.settings = p.settings
WHERE p.genotype_hash <> '{BASELINE}'
ORDER BY p.experiment, p.genotype_hash, p.fold, p.seed
"""
"""Each genotype's test UA beside the baseline's under the same settings, per shared (fold, seed)."""


def wilcoxon_vs_baseline(test_ua: list[float], baseline_test_ua: list[float]) -> tuple[float | None, str]:
    """Two-sided Wilcoxon signed-rank p-value of the paired test UAs, and a note when there is none.

    None with fewer than 2 pairs (``"n/a: <2 pairs"``) or when every difference is zero
    (``"n/a: all differences zero"``). With few pairs the p-value cannot be small (5 pairs: at
    least 0.0625), which the note ``"exact, n=K"`` reminds of.
    """
    from scipy.stats import wilcoxon

    diffs = [a - b for a, b in zip(test_ua, baseline_test_ua)]
    if len(diffs) < 2:
        return None, "n/a: <2 pairs"
    if all(d == 0 for d in diffs):
        return None, "n/a: all differences zero"
    result = wilcoxon(test_ua, baseline_test_ua, zero_method="wilcox", alternative="two-sided")
    p = float(result.pvalue)
    return (None, "n/a: undefined") if math.isnan(p) else (p, f"n={len(diffs)}")


def cross_eval_summary(board: Any, *, experiment: str | None = None, top: int | None = None) -> pd.DataFrame:
    """The ``cross_eval`` view (of ``experiment``, ``top`` best of each) with ``wilcoxon_p`` and
    ``wilcoxon_note`` (a fold-level test: each fold's seeds averaged first) and, from the stored
    predictions, the speaker-level statistics of ``leaderboard.comparisons.SPEAKER_COLUMNS``."""
    if top is not None and top < 1:
        raise ValueError(f"top must be >= 1, but got {top}.")
    where = []
    params: list[Any] = []
    if experiment is not None:
        where.append("experiment = ?")
        params.append(experiment)
    if top is not None:
        where.append(f"rank <= {int(top)}")
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    frame: pd.DataFrame = board.sql(f"SELECT * FROM cross_eval{condition} ORDER BY experiment, rank", params)
    pairs: pd.DataFrame = board.sql(PAIRS_SQL)
    p_values, notes = [], []
    for row in frame.itertuples():
        mine = pairs[(pairs["experiment"] == row.experiment) & (pairs["genotype_hash"] == row.genotype_hash)]
        if row.genotype_hash == BASELINE:
            p, note = None, "the baseline"
        elif mine.empty:
            p, note = None, "n/a: no baseline run under its settings on its folds"
        else:  # seeds share their fold's test speakers: their mean is one observation per fold
            per_fold = mine.groupby("fold")[["test_ua", "baseline_test_ua"]].mean()
            p, note = wilcoxon_vs_baseline(per_fold["test_ua"].tolist(), per_fold["baseline_test_ua"].tolist())
        p_values.append(p)
        notes.append(note)
    frame["wilcoxon_p"] = pd.Series(p_values, index=frame.index, dtype="float64")
    frame["wilcoxon_note"] = notes
    return add_speaker_statistics(board, frame, baseline=BASELINE)
