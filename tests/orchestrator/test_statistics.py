"""Pooled metrics, speaker-bootstrap intervals, paired permutation tests and Holm, from predictions."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, recall_score

from orchestrator.statistics import holm, paired_comparison, pooled_metrics

CLASSES = ("ang", "hap", "neu", "sad")


def predictions(n_speakers: int = 6, per_speaker: int = 20, *, skill: float = 0.6, seed: int = 0) -> pd.DataFrame:
    """One network's test predictions: each utterance right with probability ``skill``."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_speakers):
        for u in range(per_speaker):
            label = CLASSES[rng.integers(len(CLASSES))]
            guess = label if rng.random() < skill else CLASSES[rng.integers(len(CLASSES))]
            rows.append({"utt_id": f"s{s}-u{u}", "speaker": f"s{s}", "label": label, "predicted": guess})
    return pd.DataFrame(rows)


def test_pooled_metrics_of_one_network_are_sklearns_over_every_protocol_class() -> None:
    frame = predictions()
    frame.loc[frame["predicted"] == "sad", "predicted"] = "neu"  # a class never predicted
    frame = frame[frame["label"] != "hap"]  # and one absent from the truth (but predicted)
    frame.loc[frame.index[:3], "predicted"] = "hap"
    pooled = pooled_metrics(frame, CLASSES)
    labels = list(CLASSES)
    assert pooled.ua == pytest.approx(
        recall_score(frame["label"], frame["predicted"], labels=labels, average="macro", zero_division=0)
    )
    assert pooled.wa == pytest.approx(accuracy_score(frame["label"], frame["predicted"]))
    assert pooled.macro_f1 == pytest.approx(
        f1_score(frame["label"], frame["predicted"], labels=labels, average="macro", zero_division=0)
    )
    assert pooled.utterances == len(frame) and pooled.speakers == 6 and pooled.networks == 1
    low, high = pooled.ua_interval
    assert low < pooled.ua < high


def test_several_networks_on_one_utterance_count_as_their_mean_vote() -> None:
    first, second = predictions(seed=1), predictions(seed=1, skill=0.2)
    second["label"] = first["label"]  # the same utterances, scored by two networks
    both = pooled_metrics(pd.concat([first, second]), CLASSES)
    assert both.utterances == len(first) and both.networks == 2
    assert both.ua == pytest.approx((pooled_metrics(first, CLASSES).ua + pooled_metrics(second, CLASSES).ua) / 2)


def test_intervals_resample_speakers_and_a_rerun_prints_the_same() -> None:
    frame = predictions(n_speakers=8)
    pooled = pooled_metrics(frame, CLASSES)
    assert pooled_metrics(frame, CLASSES) == pooled
    assert pooled_metrics(frame, CLASSES, seed=1).ua_interval != pooled.ua_interval
    # Twice as many utterances of the same speakers: resampling utterances would narrow the
    # interval by about 1/sqrt(2); resampling speakers leaves it as it is.
    doubled = pd.concat([frame, frame.assign(utt_id=frame["utt_id"] + "-again")])
    again = pooled_metrics(doubled, CLASSES)
    assert again.ua == pytest.approx(pooled.ua)
    assert again.ua_interval == pytest.approx(pooled.ua_interval)
    assert set(pooled.per_speaker_ua) == {f"s{s}" for s in range(8)}


def test_paired_permutation_p_is_exact_over_speaker_swaps() -> None:
    reference = predictions(n_speakers=5, skill=0.3, seed=2)
    candidate = reference.copy()
    candidate["predicted"] = candidate["label"]  # right everywhere: better on every speaker
    result = paired_comparison(candidate, reference, CLASSES)
    # Only the identity and the full swap are as extreme as observed: 2 of 2^5.
    assert result.p == pytest.approx(2 / 32) and result.method == "exact, 2^5 swaps"
    assert result.diff == pytest.approx(1.0 - pooled_metrics(reference, CLASSES).ua)
    assert 0 < result.interval[0] <= result.diff <= result.interval[1]
    same = paired_comparison(reference, reference, CLASSES)
    assert same.diff == 0.0 and same.p == 1.0


def test_the_exact_p_matches_brute_force_pooled_ua_over_all_swaps() -> None:
    a, b = predictions(n_speakers=4, seed=3), predictions(n_speakers=4, seed=4, skill=0.4)
    b["label"] = a["label"]
    result = paired_comparison(a, b, CLASSES)
    observed = pooled_metrics(a, CLASSES).ua - pooled_metrics(b, CLASSES).ua
    as_extreme = 0
    for swapped in itertools.product((False, True), repeat=4):
        flip = {f"s{s}" for s in range(4) if swapped[s]}
        x = pd.concat([a[~a["speaker"].isin(flip)], b[b["speaker"].isin(flip)]])
        y = pd.concat([b[~b["speaker"].isin(flip)], a[a["speaker"].isin(flip)]])
        diff = pooled_metrics(x, CLASSES).ua - pooled_metrics(y, CLASSES).ua
        as_extreme += abs(diff) >= abs(observed) - 1e-12
    assert result.diff == pytest.approx(observed)
    assert result.p == pytest.approx(as_extreme / 16)


def test_many_speakers_use_a_seeded_monte_carlo() -> None:
    a, b = predictions(n_speakers=20, seed=5), predictions(n_speakers=20, seed=6, skill=0.5)
    b["label"] = a["label"]
    first = paired_comparison(a, b, CLASSES, permutations=20_000)
    assert first == paired_comparison(a, b, CLASSES, permutations=20_000)
    assert first.method == "Monte Carlo, 20000 swaps" and 0 < first.p <= 1


def test_holm_step_down() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, None, 0.01]) == [pytest.approx(0.5), None, pytest.approx(0.02)]
    assert holm([]) == []
