"""Figures a reviewer accepts, from per-utterance predictions: pooled metrics, speaker-resampled
intervals, and paired comparisons with speakers as the unit.

Speakers, not utterances, are the unit of independence in speaker-independent SER: two clips of
one speaker share their voice, and two seeds (or inner folds) of one fold share its test speakers.
So:

- **Pooled metrics** count each test utterance of a protocol once (every outer fold's test
  speakers together). Where several networks scored one utterance (seeds, inner folds), its
  prediction counts as the mean of their one-hot votes: the pooled figure is what one of those
  networks scores on average, not an ensemble. UA is the mean recall over every protocol class
  (a class with no utterance counts 0, ``trainers.metrics``), WA the accuracy, macro-F1 the mean
  per-class F1.
- **Intervals** are percentile bootstrap intervals that resample *speakers* with replacement
  (all of a drawn speaker's utterances come along), seeded, so a rerun prints the same interval.
- **Paired comparisons** (a candidate against a reference, e.g. the hand-made baseline, on the
  utterances both scored): the effect is the difference in pooled UA, with a paired speaker
  bootstrap interval (both recomputed on the same resample); the p-value is a two-sided paired
  permutation test that swaps the two models' predictions within a random subset of speakers
  (exact over all 2^S swaps up to ``EXACT_SPEAKERS`` speakers, seeded Monte Carlo above).
  ``holm`` corrects the p-values of several candidates compared with one reference.
- **Per-speaker UA** is the mean recall over the classes that speaker has (a speaker rarely has
  every class).

Pure numpy: the callers (``orchestrator.selection``, the cross-eval view) hand in frames of the
``predictions`` view.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "CONFIDENCE",
    "EXACT_SPEAKERS",
    "PairedComparison",
    "PooledMetrics",
    "SpeakerConfusions",
    "holm",
    "paired_comparison",
    "pooled_metrics",
    "speaker_confusions",
]

BOOTSTRAP_RESAMPLES = 2000
PERMUTATIONS = 100_000  # Monte Carlo sign flips above EXACT_SPEAKERS speakers
EXACT_SPEAKERS = 16  # up to 2^16 = 65,536 swaps, enumerated
CONFIDENCE = 0.95
SEED = 0


@dataclass(frozen=True)
class SpeakerConfusions:
    """Per speaker, a soft confusion matrix: ``counts[s, true, predicted]``, each utterance adding
    1 spread over the classes its networks predicted."""

    speakers: tuple[str, ...]
    classes: tuple[str, ...]
    counts: np.ndarray  # (S, K, K) float64
    utterances: int
    networks: int  # the most networks that scored one utterance


def speaker_confusions(
    predictions: pd.DataFrame, classes: Sequence[str], *, utterances: Sequence[str] | None = None
) -> SpeakerConfusions:
    """``predictions`` (rows of the ``predictions`` view: ``utt_id``, ``speaker``, ``label``,
    ``predicted``; one row per network and utterance) as per-speaker soft confusions, over
    ``utterances`` only when given."""
    classes = tuple(classes)
    index = {name: k for k, name in enumerate(classes)}
    frame = predictions if utterances is None else predictions[predictions["utt_id"].isin(set(utterances))]
    unknown = sorted((set(frame["label"]) | set(frame["predicted"])) - set(index))
    if unknown:
        raise ValueError(f"predictions name classes {unknown} that are not among {list(classes)}")
    frame = frame.assign(
        speaker=frame["speaker"].fillna("?").astype(str),
        true=frame["label"].map(index),
        guess=frame["predicted"].map(index),
    )
    votes = frame.groupby("utt_id")["utt_id"].transform("size").to_numpy(dtype=np.float64)
    speakers = tuple(sorted(frame["speaker"].unique()))
    where = {name: s for s, name in enumerate(speakers)}
    counts = np.zeros((len(speakers), len(classes), len(classes)))
    np.add.at(
        counts,
        (frame["speaker"].map(where).to_numpy(), frame["true"].to_numpy(), frame["guess"].to_numpy()),
        1.0 / votes,
    )
    return SpeakerConfusions(
        speakers=speakers,
        classes=classes,
        counts=counts,
        utterances=int(frame["utt_id"].nunique()),
        networks=int(votes.max()) if len(votes) else 0,
    )


def _metrics(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """UA, WA and macro-F1 of ``confusion`` (..., K, K), vectorised over the leading axes."""
    hits = np.diagonal(confusion, axis1=-2, axis2=-1)  # (..., K)
    support, predicted = confusion.sum(axis=-1), confusion.sum(axis=-2)
    total = support.sum(axis=-1)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    denominator = support + predicted
    f1 = np.divide(2 * hits, denominator, out=np.zeros_like(hits), where=denominator > 0)
    return {
        "ua": recall.mean(axis=-1),
        "wa": np.divide(hits.sum(axis=-1), total, out=np.full_like(total, np.nan), where=total > 0),
        "macro_f1": f1.mean(axis=-1),
    }


def _resample_weights(n_speakers: int, *, resamples: int, seed: int) -> np.ndarray:
    """(resamples, S): how often each speaker is drawn in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_speakers, np.full(n_speakers, 1.0 / n_speakers), size=resamples).astype(np.float64)


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def _per_speaker_ua(counts: np.ndarray) -> np.ndarray:
    """(S,) mean recall over each speaker's own classes."""
    hits = np.diagonal(counts, axis1=-2, axis2=-1)
    support = counts.sum(axis=-1)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    return recall.sum(axis=-1) / np.maximum((support > 0).sum(axis=-1), 1)


@dataclass(frozen=True)
class PooledMetrics:
    """Pooled test metrics of one protocol (or one model) with speaker-bootstrap intervals."""

    ua: float
    wa: float
    macro_f1: float
    ua_interval: tuple[float, float]
    wa_interval: tuple[float, float]
    macro_f1_interval: tuple[float, float]
    utterances: int
    speakers: int
    networks: int  # the most networks that scored one utterance (their votes are averaged)
    per_speaker_ua: dict[str, float] = field(default_factory=dict)
    confidence: float = CONFIDENCE
    resamples: int = BOOTSTRAP_RESAMPLES
    seed: int = SEED

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("ua_interval", "wa_interval", "macro_f1_interval"):
            data[key] = list(data[key])
        return data

    def text(self) -> str:
        low, high = self.ua_interval
        return (
            f"pooled UA {self.ua:.3f} [{low:.3f}, {high:.3f}] ({self.confidence:.0%} speaker bootstrap; "
            f"{self.utterances} utterances, {self.speakers} speakers)"
        )


def pooled_metrics(
    predictions: pd.DataFrame,
    classes: Sequence[str],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> PooledMetrics | None:
    """Pooled UA, WA, macro-F1 of the test ``predictions`` with speaker-bootstrap intervals; None without any."""
    tables = speaker_confusions(predictions, classes)
    if tables.utterances == 0:
        return None
    point = _metrics(tables.counts.sum(axis=0))
    weights = _resample_weights(len(tables.speakers), resamples=resamples, seed=seed)
    boot = _metrics(np.einsum("bs,skl->bkl", weights, tables.counts))
    return PooledMetrics(
        ua=float(point["ua"]),
        wa=float(point["wa"]),
        macro_f1=float(point["macro_f1"]),
        ua_interval=_interval(boot["ua"], confidence),
        wa_interval=_interval(boot["wa"], confidence),
        macro_f1_interval=_interval(boot["macro_f1"], confidence),
        utterances=tables.utterances,
        speakers=len(tables.speakers),
        networks=tables.networks,
        per_speaker_ua={s: float(v) for s, v in zip(tables.speakers, _per_speaker_ua(tables.counts))},
        confidence=confidence,
        resamples=resamples,
        seed=seed,
    )


@dataclass(frozen=True)
class PairedComparison:
    """A candidate against a reference on the test utterances both scored."""

    diff: float  # pooled UA of the candidate minus the reference's
    interval: tuple[float, float]  # paired speaker bootstrap
    p: float  # two-sided paired permutation test over speakers
    method: str  # "exact, 2^S swaps" or "Monte Carlo, N swaps"
    speakers: int
    utterances: int

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["interval"] = list(self.interval)
        return data


def _swap_p(contributions: np.ndarray, *, seed: int, permutations: int) -> tuple[float, str]:
    """Two-sided p of ``sum(contributions)`` under random sign flips per speaker."""
    observed = abs(contributions.sum())
    tolerance = 1e-12 * max(1.0, observed)
    n = len(contributions)
    if n <= EXACT_SPEAKERS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))  # (2^S, S)
        extreme = np.abs(signs @ contributions) >= observed - tolerance
        return float(extreme.mean()), f"exact, 2^{n} swaps"
    rng = np.random.default_rng(seed)
    extreme = 0
    for start in range(0, permutations, 10_000):
        signs = rng.choice((1.0, -1.0), size=(min(10_000, permutations - start), n))
        extreme += int((np.abs(signs @ contributions) >= observed - tolerance).sum())
    return (extreme + 1) / (permutations + 1), f"Monte Carlo, {permutations} swaps"


def paired_comparison(
    candidate: pd.DataFrame,
    reference: pd.DataFrame,
    classes: Sequence[str],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
    permutations: int = PERMUTATIONS,
) -> PairedComparison | None:
    """``candidate`` vs ``reference`` (test rows of the ``predictions`` view) on the utterances
    both scored; None when they share none."""
    shared = sorted(set(candidate["utt_id"]) & set(reference["utt_id"]))
    if not shared:
        return None
    a = speaker_confusions(candidate, classes, utterances=shared)
    b = speaker_confusions(reference, classes, utterances=shared)
    if a.speakers != b.speakers:
        raise ValueError("the two models' predictions name other speakers for the same utterances")
    # Pooled UA is linear in each speaker's hits: UA = sum_s sum_k hits[s, k] / (K * support[k]).
    support = a.counts.sum(axis=(0, 2))  # (K,), the same utterances: the same for both
    scale = np.divide(1.0, len(a.classes) * support, out=np.zeros_like(support), where=support > 0)
    hits_a, hits_b = np.diagonal(a.counts, axis1=1, axis2=2), np.diagonal(b.counts, axis1=1, axis2=2)
    contributions = ((hits_a - hits_b) * scale).sum(axis=1)  # (S,): a speaker's share of the UA difference
    p, method = _swap_p(contributions, seed=seed, permutations=permutations)
    weights = _resample_weights(len(a.speakers), resamples=resamples, seed=seed)
    boot = (
        _metrics(np.einsum("bs,skl->bkl", weights, a.counts))["ua"]
        - _metrics(np.einsum("bs,skl->bkl", weights, b.counts))["ua"]
    )
    diff = float(_metrics(a.counts.sum(axis=0))["ua"] - _metrics(b.counts.sum(axis=0))["ua"])
    return PairedComparison(
        diff=diff,
        interval=_interval(boot, confidence),
        p=float(min(1.0, p)),
        method=method,
        speakers=len(a.speakers),
        utterances=len(shared),
    )


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of ``pvalues`` (None and NaN are kept and not counted)."""
    present = [(p, i) for i, p in enumerate(pvalues) if p is not None and not math.isnan(p)]
    adjusted: list[float | None] = [None if p is None or math.isnan(p) else p for p in pvalues]
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (len(present) - rank) * p))
        adjusted[i] = running
    return adjusted
