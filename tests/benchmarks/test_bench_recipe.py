"""``benchmarks/bench_recipe.py``'s summary on made-up runs: seeds never count as samples, and the
ablation is decided on validation UA while test UA only stands beside it."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_recipe  # noqa: E402

FOLDS, SEEDS = (1, 2, 3, 4, 5), (0, 1, 2)


def _run(fold: int, seed: int, *, valid: float, test: float) -> dict:
    """A network's run: test speakers of session ``fold``, validation speakers of the next one."""
    after = fold % len(FOLDS) + 1
    return {
        "fold": fold,
        "seed": seed,
        "valid_ua": valid,
        "test_ua": test,
        "valid_speaker_ua": {f"S{after}F": valid, f"S{after}M": valid},
        "test_speaker_ua": {f"S{fold}F": test, f"S{fold}M": test},
        "architecture": "baseline",
    }


def _summary(ablation_valid: float, ablation_test: float) -> dict:
    pairs = [
        {
            "fold": fold,
            "seed": seed,
            "searched": _run(fold, seed, valid=0.6 + 0.01 * seed, test=0.60 + 0.01 * fold),
            "handmade": _run(fold, seed, valid=0.6, test=0.55 + 0.01 * fold),
        }
        for fold in FOLDS
        for seed in SEEDS
    ]
    logistic = [{**_run(fold, 0, valid=0.0, test=0.5), "seed": None, "valid_ua": None} for fold in FOLDS]
    ablated = [
        _run(f, s, valid=0.6 + 0.01 * s + ablation_valid, test=0.6 + 0.01 * f + ablation_test)
        for f in FOLDS
        for s in SEEDS
    ]
    runs = {name: ablated for name in bench_recipe.ABLATIONS}
    logistics = {"train_standardised": logistic, "speaker_standardised": logistic}
    return bench_recipe.summarise(pairs, logistics, runs, ablation_seeds=list(SEEDS))


def test_seeds_are_averaged_before_the_fold_and_speaker_tests():
    summary = _summary(0.0, 0.0)
    folds = summary["comparisons"]["searched_vs_handmade"]["folds"]
    speakers = summary["comparisons"]["searched_vs_handmade"]["speakers"]
    assert folds["n"] == 5 and speakers["n"] == 10  # not 15 (fold, seed) pairs
    assert folds["p_value"] == pytest.approx(1 / 32) and folds["mean_difference"] == pytest.approx(0.05)
    assert speakers["p_value"] == pytest.approx(1 / 1024)
    assert summary["goal"]["met"]
    json.dumps(summary)  # what the benchmark writes


def test_the_ablation_is_decided_on_validation_not_test():
    # Validation prefers the recipe (the change loses 0.02), the test speakers would prefer the change.
    row = _summary(-0.02, +0.05)["ablation"]["rows"]["no masking"]
    assert row["valid_cost"] == pytest.approx(0.02) and row["test_cost"] == pytest.approx(-0.05)
    assert row["validation_prefers"] == "recipe"
    # two-sided over 5 folds (floor 2/32), Holm over the 9 ablations (all equal here)
    assert row["valid_folds"]["p_value"] == pytest.approx(2 / 32)
    assert row["valid_folds"]["p_holm"] == pytest.approx(9 * 2 / 32) and not row["resolved"]
    assert row["valid_speakers"]["p_holm"] == pytest.approx(9 * 2 / 1024) and row["resolved_over_speakers"]
    assert not [key for key, value in row.items() if key.startswith("test") and isinstance(value, dict)]
