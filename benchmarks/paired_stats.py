"""Paired comparisons whose unit is a fold or a speaker, never a seed (``bench_recipe``).

Seeds that share a fold's test speakers are not independent samples: a caller averages them
within each fold (or speaker) first and passes one number per unit. Every p-value comes with the
effect size (the mean difference) and a seeded 95 % bootstrap interval over the same units, and
a family of comparisons against one reference is Holm-corrected (``orchestrator.statistics.holm``).

With few units an exact test has a floor: n units give at best ``1 / 2**n`` one-sided and
``2 / 2**n`` two-sided (5 folds: 0.031 / 0.0625), reported as ``min_p`` beside each p.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from scipy.stats import wilcoxon

Alternative = Literal["greater", "two-sided"]
EXACT_UP_TO = 20  # units: 2**20 sign patterns are enumerated; more are sampled
RESAMPLES = 10_000
PERMUTATIONS = 100_000


def bootstrap_interval(differences: Sequence[float], *, seed: int = 0, level: float = 0.95) -> list[float]:
    """Percentile interval of the mean of ``differences``, resampling the units with replacement."""
    values = np.asarray(differences, dtype=np.float64)
    rows = np.random.default_rng(seed).integers(0, len(values), size=(RESAMPLES, len(values)))
    means = values[rows].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    return [float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))]


def min_p(n: int, alternative: Alternative) -> float:
    """The smallest p an exact sign-flip or signed-rank test can give with ``n`` non-zero units."""
    return min(1.0, (1.0 if alternative == "greater" else 2.0) / 2.0**n) if n else 1.0


def sign_flip_test(differences: Sequence[float], *, alternative: Alternative, seed: int = 0) -> dict:
    """Paired permutation test of the mean difference: each unit's sign flipped at random.

    Exact (all ``2**n`` patterns) up to ``EXACT_UP_TO`` units, else ``PERMUTATIONS`` seeded draws
    (p counted with the observed pattern, ``(1 + hits) / (1 + draws)``).
    """
    values = np.asarray(differences, dtype=np.float64)
    n = len(values)
    exact = n <= EXACT_UP_TO
    if exact:
        signs = 1.0 - 2.0 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)  # (2**n, n)
    else:
        signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(PERMUTATIONS, n))
    means = signs @ values / n  # (patterns,)
    observed = values.mean()
    tolerance = 1e-12
    if alternative == "greater":
        hits = int((means >= observed - tolerance).sum())
    else:
        hits = int((np.abs(means) >= abs(observed) - tolerance).sum())
    p = hits / len(means) if exact else (1 + hits) / (1 + len(means))
    return {"p_value": float(p), "exact": exact, "patterns": len(means), "min_p": min_p(n, alternative)}


def wilcoxon_test(differences: Sequence[float], *, alternative: Alternative) -> dict:
    """Exact Wilcoxon signed-rank test on ``differences`` (zeros dropped; p = 1 when all are zero)."""
    values = np.asarray(differences, dtype=np.float64)
    nonzero = int((np.abs(values) > 1e-12).sum())
    if nonzero == 0:
        return {"statistic": 0.0, "p_value": 1.0, "min_p": 1.0}
    test = wilcoxon(values, alternative=alternative)
    return {"statistic": float(test.statistic), "p_value": float(test.pvalue), "min_p": min_p(nonzero, alternative)}


def _units(a: Mapping, b: Mapping) -> tuple[list, np.ndarray]:
    if set(a) != set(b):
        raise ValueError(f"paired values must share their units, but got {sorted(a)} and {sorted(b)}.")
    units = sorted(a)
    return units, np.array([a[u] - b[u] for u in units], dtype=np.float64)


def _effect(differences: np.ndarray, *, seed: int) -> dict:
    return {
        "n": len(differences),
        "mean_difference": float(differences.mean()),
        "interval_95": bootstrap_interval(differences, seed=seed),
        "wins": int((differences > 0).sum()),
        "losses": int((differences < 0).sum()),
    }


def fold_comparison(a: Mapping[int, float], b: Mapping[int, float], *, alternative: Alternative, seed: int = 0) -> dict:
    """``a`` vs ``b`` with folds as units (one number per fold, seeds averaged by the caller):
    the mean difference with its fold-bootstrap interval, and an exact Wilcoxon signed-rank p."""
    units, differences = _units(a, b)
    return {
        "unit": "fold",
        "units": units,
        "differences": differences.tolist(),
        **_effect(differences, seed=seed),
        "test": "wilcoxon signed-rank (exact unless tied differences)",
        **wilcoxon_test(differences, alternative=alternative),
    }


def speaker_comparison(
    a: Mapping[str, float], b: Mapping[str, float], *, alternative: Alternative, seed: int = 0
) -> dict:
    """``a`` vs ``b`` with speakers as units (one UA per speaker, seeds averaged by the caller):
    the mean difference with its speaker-bootstrap interval, and a sign-flip permutation p."""
    units, differences = _units(a, b)
    return {
        "unit": "speaker",
        "units": units,
        "differences": differences.tolist(),
        **_effect(differences, seed=seed),
        "test": "sign-flip permutation of the mean difference",
        **sign_flip_test(differences, alternative=alternative, seed=seed),
    }
