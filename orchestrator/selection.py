"""Validation chooses, test reports: the metrics that select, and the nested estimate.

Every choice between trials (the searcher's objective, the pruners, the leaderboard's ranking,
the report's "best", export) reads a *validation* UA; test UA is carried beside it and never
orders, prunes or picks. This module owns those metric names, so nobody restates them.

The **nested estimate** measures the whole search procedure rather than its luckiest trial, and
is nested by construction (docs/selection.md): every search trial belongs to one outer fold, whose
own Optuna study proposed, pruned and completed it using that fold's non-test speakers only. For
each outer fold, the trial its study would choose (the best mean validation UA over its inner
folds among the trials the study records COMPLETE; ties go to the earliest trial id, never to
test), and its test UA on that fold (mean over its inner folds' networks); their mean and
standard deviation over folds. Beside it sits the optimistic "oracle" figure: on each fold the
trial with the best *test* UA, averaged over folds, which lets the test speakers choose and so
overstates what the procedure would score on new speakers; the gap says by how much. Publish the
nested estimate. A cross-corpus experiment has one outer fold per test corpus, so its picks are per
test corpus (``FoldPick.dataset``: ``iemocap->msp-improv``) and ``by_dataset`` states each.

Rows written before nested selection (no ``outer_fold``; a trial then ran every fold) are read
the old way: on each fold, the finished row with the best validation UA.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import pandas as pd

from orchestrator.statistics import PooledMetrics, pooled_metrics

__all__ = [
    "EPOCH_OBJECTIVE",
    "FOLD_OBJECTIVE",
    "FOLD_TEST_UA",
    "MEAN_TEST_UA",
    "OBJECTIVE",
    "RANK_BY",
    "FoldPick",
    "NestedEstimate",
    "RankBy",
    "nested_estimates",
]

OBJECTIVE = "mean_valid_ua"  # a trial's mean validation UA over its finished folds: the searcher maximises it
FOLD_OBJECTIVE = "fold_valid_ua"  # one finished fold's validation UA: what the fold-level pruner compares
EPOCH_OBJECTIVE = "valid_ua"  # an epoch's validation UA: what the epoch-level pruners compare
FOLD_TEST_UA = "fold_test_ua"  # reported beside, never read by a scheduler or searcher
MEAN_TEST_UA = "mean_test_ua"

RankBy = Literal["valid", "test"]
RANK_BY: tuple[str, ...] = ("valid", "test")
"""``valid`` (default) ranks by mean validation UA; ``test`` is optimistic and says so."""

OPTIMISTIC_NOTE = (
    "ranked by TEST UA: optimistic, the test speakers chose the order; publish the nested estimate instead"
)


@dataclass(frozen=True)
class FoldPick:
    """The trial that validation chose on one outer fold, and what the test speakers then said."""

    fold: int
    trial_id: str
    genotype_hash: str | None  # the chosen trial's genotype (the first inner fold's, with inner folds)
    valid_ua: float  # mean over its inner folds (the study's objective)
    test_ua: float  # mean over its inner folds' networks, on the outer fold's test speakers
    candidates: int = 0  # complete trials the fold's study chose among
    oracle_trial_id: str | None = None  # the trial the TEST speakers would pick (optimistic, never used)
    oracle_test_ua: float | None = None
    dataset: str | None = None  # the fold's rows' dataset: a cross-corpus fold's "train corpora->test corpus"


@dataclass(frozen=True)
class NestedEstimate:
    experiment: str
    n_folds: int  # outer folds of the protocol
    picks: tuple[FoldPick, ...]  # one per outer fold that has a complete trial
    mean_test_ua: float
    std_test_ua: float  # sample std over folds (nan with one fold)
    best_mean_test_ua: float | None  # optimistic: mean over folds of the best test UA on each fold
    complete_trials: int
    # every outer fold's test utterances once, as the chosen trials' networks predicted them, with
    # speaker-bootstrap intervals (orchestrator.statistics); None without stored predictions
    pooled: PooledMetrics | None = None

    def by_dataset(self) -> dict[str, float]:
        """Mean test UA of the chosen trials per ``dataset`` of their folds (cross-corpus: per test corpus,
        ``iemocap->msp-improv``), in fold order; empty when the folds share one dataset."""
        groups: dict[str, list[float]] = {}
        for pick in self.picks:
            groups.setdefault(pick.dataset or "", []).append(pick.test_ua)
        if len(groups) < 2 and not any("->" in name for name in groups):
            return {}
        return {name: sum(values) / len(values) for name, values in groups.items()}

    @property
    def gap(self) -> float | None:
        """How much the optimistic number overstates the nested estimate."""
        return None if self.best_mean_test_ua is None else self.best_mean_test_ua - self.mean_test_ua

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["picks"] = [asdict(pick) for pick in self.picks]
        data["pooled"] = None if self.pooled is None else self.pooled.to_dict()
        data["gap"] = self.gap
        data["by_dataset"] = self.by_dataset()
        for key, value in data.items():
            if isinstance(value, float) and math.isnan(value):
                data[key] = None
        return data

    def headline(self) -> str:
        """One line for terminals: the nested estimate first, the optimistic number after it."""
        folds = f"{len(self.picks)}/{self.n_folds} outer folds"
        spread = "" if math.isnan(self.std_test_ua) else f" ± {self.std_test_ua:.3f}"
        text = f"nested estimate UA {self.mean_test_ua:.3f}{spread} ({folds}; validation chose, test reported)"
        per_dataset = self.by_dataset()
        if per_dataset:
            text += "; per test corpus: " + ", ".join(f"{name} {ua:.3f}" for name, ua in per_dataset.items())
        if self.pooled is not None:
            text += f"; {self.pooled.text()}"
        if self.best_mean_test_ua is not None:
            text += (
                f"; optimistic (test chose the trial on each fold, among {self.complete_trials} complete trials) "
                f"{self.best_mean_test_ua:.3f} (gap {self.gap:+.3f})"
            )
        return text


_TRIAL_FOLD_SQL = """
WITH eligible AS (  -- nested rows: trials their study recorded COMPLETE; older rows: finished folds
    SELECT * FROM runs
    WHERE stage = 'search' AND test_ua IS NOT NULL AND valid_ua IS NOT NULL AND (
        (outer_fold IS NOT NULL AND status = 'completed' AND trial_status = 'completed')
        OR (outer_fold IS NULL AND status IN ('completed', 'pruned')))
)
SELECT experiment, fold, max(n_folds) AS n_folds, trial_id, avg(valid_ua) AS valid_ua, avg(test_ua) AS test_ua,
       arg_min(genotype_hash, coalesce(inner_fold, 0)) AS genotype_hash, any_value(dataset) AS dataset
FROM eligible GROUP BY experiment, fold, trial_id
"""

_PICKS_SQL = f"""
WITH scored AS ({_TRIAL_FOLD_SQL}),
ranked AS (
    SELECT *, max(n_folds) OVER (PARTITION BY experiment) AS protocol_folds,
           count(*) OVER (PARTITION BY experiment, fold) AS candidates,
           row_number() OVER (PARTITION BY experiment, fold ORDER BY valid_ua DESC, trial_id) AS by_valid,
           row_number() OVER (PARTITION BY experiment, fold ORDER BY test_ua DESC, trial_id) AS by_test
    FROM scored
)
SELECT v.experiment, v.fold, v.protocol_folds AS n_folds, v.trial_id, v.genotype_hash, v.valid_ua, v.test_ua,
       v.candidates, t.trial_id AS oracle_trial_id, t.test_ua AS oracle_test_ua, v.dataset
FROM ranked AS v JOIN ranked AS t ON t.experiment = v.experiment AND t.fold = v.fold AND t.by_test = 1
WHERE v.by_valid = 1
ORDER BY v.experiment, v.fold
"""


_CHOSEN_PREDICTIONS_SQL = """
SELECT p.fold, p.trial_id, p.utt_id, p.speaker, p.label, p.predicted, p.classes
FROM predictions AS p JOIN (SELECT unnest(?) AS fold, unnest(?) AS trial_id) AS c
     ON c.fold = p.fold AND c.trial_id = p.trial_id
WHERE p.experiment = ? AND p.stage = 'search' AND p.split = 'test' AND p.status = 'completed'
"""


def _pooled(board: Any, experiment: str, picks: tuple[FoldPick, ...]) -> PooledMetrics | None:
    """Pooled test metrics of the trials the outer folds' studies chose (None without predictions)."""
    rows: pd.DataFrame = board.sql(
        _CHOSEN_PREDICTIONS_SQL, [[p.fold for p in picks], [p.trial_id for p in picks], experiment]
    )
    if rows.empty or set(rows["fold"]) != {p.fold for p in picks}:
        return None  # a chosen trial without predictions (written before they were stored): no pooled figure
    return pooled_metrics(rows, json.loads(rows["classes"].iloc[0]))


def nested_estimates(board: Any) -> dict[str, NestedEstimate]:
    """The nested estimate of every experiment on ``board`` (an open ``Leaderboard``)."""
    picks: pd.DataFrame = board.sql(_PICKS_SQL)
    estimates = {}
    for experiment, rows in picks.groupby("experiment", sort=True):
        chosen = tuple(
            FoldPick(
                fold=int(row.fold),
                trial_id=str(row.trial_id),
                genotype_hash=None if pd.isna(row.genotype_hash) else str(row.genotype_hash),
                valid_ua=float(row.valid_ua),
                test_ua=float(row.test_ua),
                candidates=int(row.candidates),
                oracle_trial_id=str(row.oracle_trial_id),
                oracle_test_ua=float(row.oracle_test_ua),
                dataset=None if pd.isna(row.dataset) else str(row.dataset),
            )
            for row in rows.itertuples()
        )
        tests = [pick.test_ua for pick in chosen]
        oracle = [pick.oracle_test_ua for pick in chosen]
        estimates[str(experiment)] = NestedEstimate(
            experiment=str(experiment),
            n_folds=int(rows["n_folds"].iloc[0]),
            picks=chosen,
            mean_test_ua=sum(tests) / len(tests),
            std_test_ua=float(pd.Series(tests).std()) if len(tests) > 1 else math.nan,
            best_mean_test_ua=sum(oracle) / len(oracle),
            complete_trials=int(sum(pick.candidates for pick in chosen)),
            pooled=_pooled(board, str(experiment), chosen),
        )
    return estimates
