import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from trainers.metrics import classification_metrics, confusion_matrix


def test_hand_computed_example():
    # class 0: 2 of 3 right, class 1: 1 of 1, class 2: 0 of 2 -> UA = (2/3 + 1 + 0) / 3
    result = classification_metrics([0, 0, 0, 1, 2, 2], [0, 0, 1, 1, 0, 1], n_classes=3)
    assert result["ua"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert result["wa"] == pytest.approx(3 / 6)
    assert result["confusion"] == [[2, 1, 0], [0, 1, 0], [1, 1, 0]]


def test_agrees_with_sklearn_on_random_labels():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    result = classification_metrics(y_true, y_pred, n_classes=4)
    assert result["ua"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert result["wa"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert result["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))


def test_classes_absent_from_the_truth_do_not_count_in_ua():
    assert classification_metrics([0, 0, 1], [0, 0, 1], n_classes=4)["ua"] == 1.0


def test_empty_and_bad_input():
    assert np.isnan(classification_metrics([], [], n_classes=2)["ua"])
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 2\)"):
        confusion_matrix([0, 2], [0, 1], n_classes=2)
