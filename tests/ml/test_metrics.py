import numpy as np
import pytest

from ml.metrics import classification_summary, confusion_matrix, expected_calibration_error


def test_confusion_and_per_class_by_hand():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    probs = np.eye(3)[y_pred] * 0.9 + 0.1 / 3
    s = classification_summary(probs, y_true, class_names=("a", "b", "c"))
    assert s["accuracy"] == pytest.approx(4 / 6)
    # a: P=2/2 R=2/3 F1=0.8; b: P=1/2 R=1/2 F1=0.5; c: P=1/2 R=1 F1=2/3
    assert s["per_class"]["a"] == pytest.approx(
        {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}
    )
    assert s["per_class"]["b"]["f1"] == pytest.approx(0.5)
    assert s["per_class"]["c"]["f1"] == pytest.approx(2 / 3)
    assert s["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert s["confusion_matrix"] == cm.tolist()


def test_macro_f1_only_over_present_classes():
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8]])
    s = classification_summary(probs, [0, 2], class_names=("a", "b", "c"))
    assert s["classes_present"] == ["a", "c"]
    assert s["macro_f1"] == 1.0 and s["accuracy"] == 1.0


def test_ece_by_hand():
    # two bins used: conf 0.9 (2 samples, 1 correct) and conf 0.6 (2 samples, 2 correct)
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 1, 0, 1])
    # bin 0.9: |0.5 - 0.9| = 0.4 weight 0.5; bin 0.6: |1.0 - 0.6| = 0.4 weight 0.5
    assert expected_calibration_error(probs, y, n_bins=10) == pytest.approx(0.4)
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(perfect, np.array([0, 1])) == 0.0
