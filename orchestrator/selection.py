"""Validation chooses, test reports: the metrics that select, and the nested estimate.

Every choice between trials (the searcher's objective, the pruners, the leaderboard's ranking,
the report's "best", export) reads a *validation* UA; test UA is carried beside it and never
orders, prunes or picks. This module owns those metric names, so nobody restates them.

The **nested estimate** measures the whole search procedure rather than its luckiest trial: for
each fold, the trial with the best validation UA on that fold (ties go to the earliest trial id,
never to test), and its test UA on that fold; their mean and standard deviation over folds. It
sits next to the optimistic "best mean test UA over trials" (the maximum, over trials that
finished every fold, of their mean test UA), which picks the winner on the test speakers and so
overstates what the procedure would score on new speakers; the gap between the two says by how
much. Publish the nested estimate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import pandas as pd

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
    """The trial that validation chose on one fold, and what the test speakers then said."""

    fold: int
    trial_id: str
    genotype_hash: str | None
    valid_ua: float
    test_ua: float


@dataclass(frozen=True)
class NestedEstimate:
    experiment: str
    n_folds: int  # folds of the protocol
    picks: tuple[FoldPick, ...]  # one per fold that has a finished trial
    mean_test_ua: float
    std_test_ua: float  # sample std over folds (nan with one fold)
    best_mean_test_ua: float | None  # optimistic: max over complete trials of their mean test UA
    best_trial_by_test: str | None
    complete_trials: int

    @property
    def gap(self) -> float | None:
        """How much the optimistic number overstates the nested estimate."""
        return None if self.best_mean_test_ua is None else self.best_mean_test_ua - self.mean_test_ua

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["picks"] = [asdict(pick) for pick in self.picks]
        data["gap"] = self.gap
        for key, value in data.items():
            if isinstance(value, float) and math.isnan(value):
                data[key] = None
        return data

    def headline(self) -> str:
        """One line for terminals: the nested estimate first, the optimistic number after it."""
        folds = f"{len(self.picks)}/{self.n_folds} folds"
        spread = "" if math.isnan(self.std_test_ua) else f" ± {self.std_test_ua:.3f}"
        text = f"nested estimate UA {self.mean_test_ua:.3f}{spread} ({folds}; validation chose, test reported)"
        if self.best_mean_test_ua is not None:
            text += (
                f"; optimistic best mean test UA over {self.complete_trials} complete trials "
                f"{self.best_mean_test_ua:.3f} (gap {self.gap:+.3f})"
            )
        return text


_PICKS_SQL = """
SELECT experiment, fold, max(n_folds) OVER (PARTITION BY experiment) AS n_folds, trial_id, genotype_hash,
       valid_ua, ua AS test_ua
FROM runs
WHERE stage = 'search' AND status IN ('completed', 'pruned') AND ua IS NOT NULL AND valid_ua IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY experiment, fold ORDER BY valid_ua DESC, trial_id) = 1
ORDER BY experiment, fold
"""

_BEST_BY_TEST_SQL = """
SELECT experiment, trial_id, avg(ua) AS mean_test_ua, count(DISTINCT fold) AS folds, max(n_folds) AS n_folds
FROM runs
WHERE stage = 'search' AND status IN ('completed', 'pruned') AND ua IS NOT NULL
GROUP BY experiment, trial_id
HAVING count(DISTINCT fold) >= max(n_folds)
"""


def nested_estimates(board: Any) -> dict[str, NestedEstimate]:
    """The nested estimate of every experiment on ``board`` (an open ``Leaderboard``)."""
    picks: pd.DataFrame = board.sql(_PICKS_SQL)
    complete: pd.DataFrame = board.sql(_BEST_BY_TEST_SQL)
    estimates = {}
    for experiment, rows in picks.groupby("experiment", sort=True):
        chosen = tuple(
            FoldPick(
                fold=int(row.fold),
                trial_id=str(row.trial_id),
                genotype_hash=None if pd.isna(row.genotype_hash) else str(row.genotype_hash),
                valid_ua=float(row.valid_ua),
                test_ua=float(row.test_ua),
            )
            for row in rows.itertuples()
        )
        tests = [pick.test_ua for pick in chosen]
        mine = complete[complete["experiment"] == experiment].sort_values(
            ["mean_test_ua", "trial_id"], ascending=[False, True]
        )
        estimates[str(experiment)] = NestedEstimate(
            experiment=str(experiment),
            n_folds=int(rows["n_folds"].iloc[0]),
            picks=chosen,
            mean_test_ua=sum(tests) / len(tests),
            std_test_ua=float(pd.Series(tests).std()) if len(tests) > 1 else math.nan,
            best_mean_test_ua=None if mine.empty else float(mine["mean_test_ua"].iloc[0]),
            best_trial_by_test=None if mine.empty else str(mine["trial_id"].iloc[0]),
            complete_trials=len(mine),
        )
    return estimates
