"""The paired statistics of ``benchmarks/bench_recipe.py``: Holm, the exact tests' floors, the
sign-flip test and the bootstrap interval, against hand-computed values."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from paired_stats import (  # noqa: E402
    bootstrap_interval,
    fold_comparison,
    min_p,
    sign_flip_test,
    speaker_comparison,
    wilcoxon_test,
)


def test_five_folds_cannot_go_below_their_floor():
    all_positive = [0.01, 0.02, 0.03, 0.04, 0.05]
    assert wilcoxon_test(all_positive, alternative="greater")["p_value"] == pytest.approx(1 / 32)
    assert wilcoxon_test(all_positive, alternative="two-sided")["p_value"] == pytest.approx(2 / 32)
    assert min_p(5, "greater") == 1 / 32 and min_p(5, "two-sided") == 2 / 32
    assert wilcoxon_test([0.0] * 5, alternative="greater")["p_value"] == 1.0


def test_sign_flip_is_exact_for_few_units_and_seeded_for_many():
    # 3 units: of the 8 sign patterns, only all-plus has a mean >= the observed one.
    assert sign_flip_test([0.1, 0.2, 0.3], alternative="greater") == {
        "p_value": 1 / 8,
        "exact": True,
        "patterns": 8,
        "min_p": 1 / 8,
    }
    assert sign_flip_test([0.1, 0.2, 0.3], alternative="two-sided")["p_value"] == 2 / 8
    many = np.random.default_rng(1).normal(0.0, 1.0, size=30)
    first = sign_flip_test(many, alternative="two-sided", seed=3)
    assert not first["exact"] and first == sign_flip_test(many, alternative="two-sided", seed=3)


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    values = [0.1, -0.05, 0.2, 0.0, 0.15]
    low, high = bootstrap_interval(values, seed=0)
    assert low < np.mean(values) < high and [low, high] == bootstrap_interval(values, seed=0)
    assert bootstrap_interval([0.1] * 5) == pytest.approx([0.1, 0.1])


def test_comparisons_pair_by_unit_and_refuse_mismatched_units():
    folds = fold_comparison({1: 0.6, 2: 0.7}, {2: 0.5, 1: 0.65}, alternative="greater")
    assert folds["differences"] == pytest.approx([-0.05, 0.2]) and folds["wins"] == 1 and folds["losses"] == 1
    with pytest.raises(ValueError, match="share their units"):
        speaker_comparison({"a": 0.5}, {"b": 0.5}, alternative="two-sided")
