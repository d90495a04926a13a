import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, recall_score

from trainers.metrics import absent_classes, classification_metrics, confusion_matrix, metrics_from_confusion


def sklearn_metrics(y_true, y_pred, n_classes: int) -> dict:
    """The decided definitions, as scikit-learn states them (labels = every protocol class)."""
    labels = list(range(n_classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about labels absent from y_true / y_pred
        return {
            "ua": recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
            "wa": accuracy_score(y_true, y_pred),
            "macro_f1": f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        }


def test_hand_computed_example():
    # class 0: 2 of 3 right, class 1: 1 of 1, class 2: 0 of 2 -> UA = (2/3 + 1 + 0) / 3
    result = classification_metrics([0, 0, 0, 1, 2, 2], [0, 0, 1, 1, 0, 1], n_classes=3)
    assert result["ua"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert result["wa"] == pytest.approx(3 / 6)
    # F1: class 0 = 2*2/(3+3), class 1 = 2*1/(1+3), class 2 = 0
    assert result["macro_f1"] == pytest.approx((4 / 6 + 2 / 4 + 0) / 3)
    assert result["confusion"] == [[2, 1, 0], [0, 1, 0], [1, 1, 0]]
    assert result["absent_classes"] == []


@pytest.mark.parametrize("seed", range(40))
def test_agrees_with_sklearn_on_random_splits_with_absent_and_never_predicted_classes(seed):
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(2, 7))
    n = int(rng.integers(1, 60))
    true_pool = rng.choice(n_classes, size=int(rng.integers(1, n_classes + 1)), replace=False)  # some classes absent
    pred_pool = rng.choice(n_classes, size=int(rng.integers(1, n_classes + 1)), replace=False)  # some never predicted
    y_true, y_pred = rng.choice(true_pool, n), rng.choice(pred_pool, n)
    result = classification_metrics(y_true, y_pred, n_classes=n_classes)
    expected = sklearn_metrics(y_true, y_pred, n_classes)
    for name in ("ua", "wa", "macro_f1"):
        assert result[name] == pytest.approx(expected[name]), name
    assert result["absent_classes"] == sorted(set(range(n_classes)) - set(y_true.tolist()))


def test_the_random_splits_do_cover_absent_and_never_predicted_classes():
    """The test above is only as strong as its splits: make sure they hold both kinds of gap."""
    kinds = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        n_classes = int(rng.integers(2, 7))
        n = int(rng.integers(1, 60))
        true_pool = rng.choice(n_classes, size=int(rng.integers(1, n_classes + 1)), replace=False)
        pred_pool = rng.choice(n_classes, size=int(rng.integers(1, n_classes + 1)), replace=False)
        y_true, y_pred = set(rng.choice(true_pool, n).tolist()), set(rng.choice(pred_pool, n).tolist())
        kinds |= {"absent"} if len(y_true) < n_classes else set()
        kinds |= {"predicted but absent"} if y_pred - y_true else set()
        kinds |= {"never predicted"} if y_true - y_pred else set()
    assert kinds == {"absent", "predicted but absent", "never predicted"}


def test_a_class_absent_from_the_split_counts_as_recall_zero_and_is_flagged():
    # The old definition averaged over the classes present (UA 1.0 here) and so hid the gap.
    result = classification_metrics([0, 0, 1], [0, 0, 1], n_classes=4)
    assert result["ua"] == pytest.approx(0.5)  # (1 + 1 + 0 + 0) / 4
    assert result["macro_f1"] == pytest.approx(0.5)
    assert result["wa"] == 1.0
    assert result["absent_classes"] == [2, 3]


def test_a_predicted_but_absent_class_counts_in_macro_f1():
    # Class 2 has no true utterance but is predicted once: its F1 is 0, and it is one of three classes.
    result = classification_metrics([0, 0, 1, 1], [0, 2, 1, 1], n_classes=3)
    assert result["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert result["macro_f1"] == pytest.approx(sklearn_metrics([0, 0, 1, 1], [0, 2, 1, 1], 3)["macro_f1"])
    assert result["ua"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert result["absent_classes"] == [2]


def test_metrics_from_confusion_and_absent_classes_read_the_matrix():
    confusion = np.array([[3, 1, 0], [0, 0, 0], [1, 0, 2]])
    assert absent_classes(confusion) == [1]
    assert metrics_from_confusion(confusion)["ua"] == pytest.approx((3 / 4 + 0 + 2 / 3) / 3)
    with pytest.raises(ValueError, match=r"must be square .* but got shape \(2, 3\)"):
        metrics_from_confusion(np.zeros((2, 3)))


def test_empty_and_bad_input():
    empty = classification_metrics([], [], n_classes=2)
    assert np.isnan(empty["ua"]) and np.isnan(empty["macro_f1"]) and empty["absent_classes"] == [0, 1]
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 2\)"):
        confusion_matrix([0, 2], [0, 1], n_classes=2)
    with pytest.raises(ValueError, match="n_classes must be >= 1, but got 0"):
        confusion_matrix([], [], n_classes=0)
