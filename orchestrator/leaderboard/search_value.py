"""Does the search earn its keep? Each searched genotype against random cells of its own space.

The field's standard (Yang et al., ICLR 2020 "NAS evaluation is frustratingly hard"; Lindauer &
Hutter, JMLR 2020) is a random-architecture control trained exactly like the searched one.
``sernas cross-eval --random K`` trains K genotypes drawn uniformly from the experiment's space
(``search_space.sampling``) beside the searched ones, the same folds, seeds and settings. Here,
per searched genotype (a cross-eval entry some search found, ``source_fold`` set):

- its rank among the random controls by mean test UA over folds x seeds, and its percentile
  (the share of controls it beats) — reported figures; nothing here chooses;
- the relative improvement over the random mean, ``100 (UA - UA_random) / UA_random`` (Yang et
  al.'s RI), on mean test UA;
- paired comparisons with the random mean and with the hand-made baseline, speakers as the unit
  (``orchestrator.statistics.paired_comparison``; the "random mean" reference is every control's
  predictions, each utterance counting as their mean vote), plus a one-sided Wilcoxon over folds
  against the random mean (each fold's seeds and controls averaged first);
- how well the supernets rank architectures: with ``search.score_controls`` each search scored the
  controls by their path UA through its shared weights on the alpha speakers (the rows'
  ``control_scores``); per outer fold, Kendall's tau between each control's mean score over that
  fold's supernets and its stand-alone validation UA in cross-eval (seeds averaged), then the mean
  over folds. Validation UA, never test: this measures the search, so test speakers stay out;
- a one-line verdict: "the search beat N of K random cells; ...".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from orchestrator.statistics import PairedComparison, paired_comparison

__all__ = ["SearchVerdict", "SupernetRanking", "search_verdicts", "supernet_rankings"]

MIN_RANKED = 3  # controls a fold needs (scored and trained) for its Kendall tau

_PER_FOLD_SQL = """
SELECT experiment, genotype_hash, fold, avg(test_ua) AS test_ua FROM runs
WHERE stage = 'cross-eval' AND status = 'completed' AND test_ua IS NOT NULL
GROUP BY ALL
"""

_CONTROL_SCORES_SQL = """
SELECT experiment, fold, control_scores FROM runs
WHERE stage = 'search' AND status = 'completed' AND control_scores IS NOT NULL
"""

_CONTROL_VALID_SQL = """
SELECT experiment, genotype_hash, fold, avg(valid_ua) AS valid_ua FROM runs
WHERE stage = 'cross-eval' AND status = 'completed' AND control = 'random' AND valid_ua IS NOT NULL
GROUP BY ALL
"""

_TEST_PREDICTIONS_SQL = """
SELECT experiment, genotype_hash, params_json AS settings, utt_id, speaker, label, predicted, classes
FROM predictions WHERE stage = 'cross-eval' AND split = 'test' AND status = 'completed'
"""


@dataclass(frozen=True)
class SupernetRanking:
    """How well an experiment's supernets ranked its random controls (Kendall tau per outer fold)."""

    tau_per_fold: dict[int, float]  # outer fold -> tau(mean shared-weight UA, stand-alone validation UA)
    controls_per_fold: dict[int, int]  # controls both scored and trained on the fold
    supernets: int  # search rows that scored controls

    @property
    def mean_tau(self) -> float:
        return sum(self.tau_per_fold.values()) / len(self.tau_per_fold)

    def text(self) -> str:
        folds = ", ".join(f"fold {fold} {tau:+.2f}" for fold, tau in sorted(self.tau_per_fold.items()))
        return (
            f"the supernets ranked the random cells with Kendall tau {self.mean_tau:+.2f} (shared-weight UA on the "
            f"alpha speakers vs stand-alone validation UA; {folds}; {self.supernets} supernets)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "tau_per_fold": {str(fold): tau for fold, tau in sorted(self.tau_per_fold.items())},
            "controls_per_fold": {str(fold): n for fold, n in sorted(self.controls_per_fold.items())},
            "mean_tau": self.mean_tau,
            "supernets": self.supernets,
            "line": self.text(),
        }


def supernet_rankings(board: Any) -> dict[str, SupernetRanking]:
    """Experiment -> how its supernets ranked the random controls that cross-eval trained, for the
    experiments whose searches scored controls (``search.score_controls``) and whose cross-eval
    trained at least ``MIN_RANKED`` of them on some fold."""
    from scipy.stats import kendalltau

    scores: pd.DataFrame = board.sql(_CONTROL_SCORES_SQL)
    if scores.empty:
        return {}
    standalone: pd.DataFrame = board.sql(_CONTROL_VALID_SQL)
    rankings = {}
    for experiment, rows in scores.groupby("experiment", sort=True):
        taus, counts = {}, {}
        for fold, group in rows.groupby("fold", sort=True):
            # one row per supernet, one column per control: each control's mean over the fold's supernets
            mean_score = pd.DataFrame([json.loads(text) for text in group["control_scores"]]).mean()
            trained = standalone[(standalone["experiment"] == experiment) & (standalone["fold"] == fold)]
            valid = trained.set_index("genotype_hash")["valid_ua"]
            both = mean_score.index.intersection(valid.index)
            if len(both) < MIN_RANKED:
                continue
            tau = float(kendalltau(mean_score[both], valid[both]).statistic)
            if not math.isnan(tau):  # a constant ranking has no tau
                taus[int(fold)], counts[int(fold)] = tau, len(both)
        if taus:
            rankings[str(experiment)] = SupernetRanking(
                tau_per_fold=taus, controls_per_fold=counts, supernets=len(rows)
            )
    return rankings


@dataclass(frozen=True)
class SearchVerdict:
    """Where one searched genotype falls among the random controls of its experiment."""

    experiment: str
    genotype_hash: str
    random_controls: int
    beaten: int  # controls whose mean test UA is below the genotype's
    rank: int  # 1 + controls above it
    percentile: float  # 100 * beaten / controls
    mean_test_ua: float
    random_mean_test_ua: float
    relative_improvement: float  # percent, Yang et al.'s RI
    folds_p: float | None  # one-sided Wilcoxon over folds, genotype > random mean
    vs_random: PairedComparison | None
    vs_baseline: PairedComparison | None

    def line(self) -> str:
        text = (
            f"the search beat {self.beaten} of {self.random_controls} random cells with {self.genotype_hash} "
            f"(rank {self.rank}, percentile {self.percentile:.0f}; mean test UA {self.mean_test_ua:.3f} vs random "
            f"mean {self.random_mean_test_ua:.3f}, RI {self.relative_improvement:+.1f}%"
        )
        if self.vs_random is not None:
            low, high = self.vs_random.interval
            text += f"; pooled vs random mean {self.vs_random.diff:+.3f} [{low:+.3f}, {high:+.3f}], p {self.vs_random.p:.3g}"
        if self.folds_p is not None:
            text += f"; folds one-sided p {self.folds_p:.3g}"
        if self.vs_baseline is not None:
            low, high = self.vs_baseline.interval
            text += f"; vs hand-made {self.vs_baseline.diff:+.3f} [{low:+.3f}, {high:+.3f}], p {self.vs_baseline.p:.3g}"
        return text + ")"

    def to_dict(self) -> dict[str, Any]:
        data = {key: getattr(self, key) for key in self.__dataclass_fields__ if not key.startswith("vs_")}
        data["vs_random"] = None if self.vs_random is None else self.vs_random.to_dict()
        data["vs_baseline"] = None if self.vs_baseline is None else self.vs_baseline.to_dict()
        data["line"] = self.line()
        return data


def _folds_p(per_fold: pd.DataFrame, genotype: str, randoms: list[str]) -> float | None:
    from scipy.stats import wilcoxon

    mine = per_fold[per_fold["genotype_hash"] == genotype].set_index("fold")["test_ua"]
    random_mean = per_fold[per_fold["genotype_hash"].isin(randoms)].groupby("fold")["test_ua"].mean()
    shared = mine.index.intersection(random_mean.index)
    diffs = (mine[shared] - random_mean[shared]).tolist()
    if len(diffs) < 2 or all(d == 0 for d in diffs):
        return None
    p = float(wilcoxon(diffs, alternative="greater").pvalue)
    return None if math.isnan(p) else p


def search_verdicts(board: Any, frame: pd.DataFrame, *, baseline: str) -> list[SearchVerdict]:
    """A verdict per searched genotype of ``frame`` (``cross_eval_summary`` rows, with ``random_control``)
    in every experiment that has random controls."""
    if frame.empty or "random_control" not in frame:
        return []
    per_fold: pd.DataFrame = board.sql(_PER_FOLD_SQL)
    predictions: pd.DataFrame = board.sql(_TEST_PREDICTIONS_SQL)
    verdicts = []
    for experiment, entries in frame.groupby("experiment", sort=True):
        randoms = entries[entries["random_control"].fillna(False).astype(bool)]
        if randoms.empty:
            continue
        searched = entries[entries["source_fold"].notna() & ~entries["random_control"].fillna(False).astype(bool)]
        mine_of = predictions[predictions["experiment"] == experiment]
        random_predictions = mine_of[mine_of["genotype_hash"].isin(set(randoms["genotype_hash"]))]
        random_mean = float(randoms["mean_test_ua"].mean())
        for row in searched.itertuples():
            beaten = int((randoms["mean_test_ua"] < row.mean_test_ua).sum())
            above = int((randoms["mean_test_ua"] > row.mean_test_ua).sum())
            mine = mine_of[mine_of["genotype_hash"] == row.genotype_hash]
            reference = mine_of[
                (mine_of["genotype_hash"] == baseline) & mine_of["settings"].isin(set(mine["settings"]))
            ]
            classes = json.loads(mine["classes"].iloc[0]) if not mine.empty else []
            verdicts.append(
                SearchVerdict(
                    experiment=str(experiment),
                    genotype_hash=str(row.genotype_hash),
                    random_controls=len(randoms),
                    beaten=beaten,
                    rank=1 + above,
                    percentile=100.0 * beaten / len(randoms),
                    mean_test_ua=float(row.mean_test_ua),
                    random_mean_test_ua=random_mean,
                    relative_improvement=100.0 * (float(row.mean_test_ua) - random_mean) / random_mean,
                    folds_p=_folds_p(
                        per_fold[per_fold["experiment"] == experiment],
                        row.genotype_hash,
                        list(randoms["genotype_hash"]),
                    ),
                    vs_random=None
                    if mine.empty or random_predictions.empty
                    else paired_comparison(mine, random_predictions, classes),
                    vs_baseline=None if mine.empty or reference.empty else paired_comparison(mine, reference, classes),
                )
            )
    return verdicts
