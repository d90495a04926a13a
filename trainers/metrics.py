"""Classification metrics SER papers report, computed from one confusion matrix.

UA (unweighted accuracy) is the mean per-class recall over the classes present in the truth;
WA (weighted accuracy) is plain accuracy; macro-F1 averages per-class F1 over the same
classes. Computing all three from one confusion matrix keeps them consistent with each other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, *, n_classes: int
) -> np.ndarray:
    """``(n_classes, n_classes)`` counts; rows are true classes, columns predictions."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same shape, but got {y_true.shape} and {y_pred.shape}.")
    if y_true.size and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= n_classes):
        raise ValueError(f"class indices must be in [0, {n_classes}).")
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def metrics_from_confusion(confusion: np.ndarray) -> dict[str, float]:
    """``{"ua", "wa", "macro_f1"}`` from a confusion matrix (NaN when it is empty)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    total = confusion.sum()
    if total == 0:
        return {"ua": float("nan"), "wa": float("nan"), "macro_f1": float("nan")}
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    hits = np.diag(confusion)
    present = support > 0
    recall = hits[present] / support[present]
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)[present]
    f1 = np.divide(
        2 * precision * recall, precision + recall, out=np.zeros_like(recall), where=(precision + recall) > 0
    )
    return {"ua": float(recall.mean()), "wa": float(hits.sum() / total), "macro_f1": float(f1.mean())}


def classification_metrics(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, *, n_classes: int
) -> dict:
    """UA, WA, macro-F1 and the confusion matrix (as nested lists, JSON-ready)."""
    confusion = confusion_matrix(y_true, y_pred, n_classes=n_classes)
    return {**metrics_from_confusion(confusion), "confusion": confusion.tolist()}
