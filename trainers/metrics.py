"""Classification metrics SER papers report, computed from one confusion matrix over the protocol's classes.

Every metric averages over EVERY class of the protocol (label indices ``0..n_classes-1``), not
only over the classes a split happens to contain, so a split's figures never change meaning
with its class mix:

- **UA** (unweighted accuracy) is the mean per-class recall over all ``n_classes`` classes; a
  class with no true utterance in the split has recall 0 (it cannot be recalled).
- **WA** (weighted accuracy) is plain accuracy.
- **macro-F1** is the mean over all ``n_classes`` classes of the per-class F1; a class with no
  true and no predicted utterance has F1 0, as has one predicted but absent from the truth.

That is exactly scikit-learn's ``recall_score(y, p, labels=range(K), average="macro",
zero_division=0)``, ``accuracy_score(y, p)`` and ``f1_score(y, p, labels=range(K),
average="macro", zero_division=0)``; note that ``balanced_accuracy_score`` differs from UA
when a class is absent (it drops that class). ``absent_classes`` lists the class indices with no
true utterance in the split, so that a split lacking a class is flagged (its UA is then at most
``(K - len(absent)) / K``), never silently averaged over fewer classes. Computing everything
from one confusion matrix keeps the figures consistent with each other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["absent_classes", "classification_metrics", "confusion_matrix", "metrics_from_confusion"]


def confusion_matrix(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, *, n_classes: int
) -> np.ndarray:
    """``(n_classes, n_classes)`` counts; rows are true classes, columns predictions."""
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, but got {n_classes}.")
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same shape, but got {y_true.shape} and {y_pred.shape}.")
    if y_true.size and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= n_classes):
        raise ValueError(f"class indices must be in [0, {n_classes}).")
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _square(confusion: np.ndarray) -> np.ndarray:
    confusion = np.asarray(confusion, dtype=np.float64)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1] or confusion.shape[0] < 1:
        raise ValueError(f"a confusion matrix must be square (n_classes x n_classes), but got shape {confusion.shape}.")
    return confusion


def absent_classes(confusion: np.ndarray) -> list[int]:
    """The class indices with no true utterance (an all-zero row) in a confusion matrix."""
    return [int(k) for k in np.flatnonzero(_square(confusion).sum(axis=1) == 0)]


def metrics_from_confusion(confusion: np.ndarray) -> dict[str, float | list[int]]:
    """``{"ua", "wa", "macro_f1", "absent_classes"}`` from a confusion matrix over the protocol's classes.

    The figures are NaN when the matrix is empty (then every class is absent).
    """
    confusion = _square(confusion)
    absent = absent_classes(confusion)
    total = confusion.sum()
    if total == 0:
        return {"ua": float("nan"), "wa": float("nan"), "macro_f1": float("nan"), "absent_classes": absent}
    support = confusion.sum(axis=1)  # true utterances per class
    predicted = confusion.sum(axis=0)
    hits = np.diag(confusion)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)  # 0 for an absent class
    # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (support + predicted); 0 when the class is neither true nor predicted
    f1 = np.divide(2 * hits, support + predicted, out=np.zeros_like(hits), where=(support + predicted) > 0)
    return {
        "ua": float(recall.mean()),
        "wa": float(hits.sum() / total),
        "macro_f1": float(f1.mean()),
        "absent_classes": absent,
    }


def classification_metrics(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, *, n_classes: int
) -> dict:
    """UA, WA, macro-F1 over all ``n_classes`` classes, ``absent_classes`` and the confusion matrix (nested
    lists, JSON-ready)."""
    confusion = confusion_matrix(y_true, y_pred, n_classes=n_classes)
    return {**metrics_from_confusion(confusion), "confusion": confusion.tolist()}
