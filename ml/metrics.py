"""Classification metrics in plain NumPy: confusion matrix, per-class P/R/F1, macro-F1, ECE."""

from __future__ import annotations

import numpy as np

from ml.classes import EMOTIONS


def confusion_matrix(y_true, y_pred, num_classes: int = len(EMOTIONS)) -> np.ndarray:
    """Rows = true class, columns = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def per_class_report(cm: np.ndarray, class_names=EMOTIONS) -> dict[str, dict]:
    out = {}
    for i, name in enumerate(class_names):
        tp = int(cm[i, i])
        support = int(cm[i].sum())
        predicted = int(cm[:, i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return out


def expected_calibration_error(probs, y_true, n_bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017)."""
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true)
    if len(y_true) == 0:
        return 0.0
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin i holds conf in (edges[i], edges[i+1]]; conf == 0 goes to the first bin
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def classification_summary(probs, y_true, class_names=EMOTIONS) -> dict:
    """Everything ``python -m ml evaluate --json`` reports, from probabilities and true labels.

    Macro-F1 averages over the classes that occur in ``y_true``, so a dataset holding only
    some of the classes is scored on those.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    report = per_class_report(cm, class_names)
    present = [class_names[i] for i in range(len(class_names)) if cm[i].sum() > 0]
    n = len(y_true)
    eps = 1e-12
    nll = float(-np.log(np.clip(probs[np.arange(n), y_true], eps, 1)).mean()) if n else 0.0
    return {
        "n": int(n),
        "accuracy": float((y_pred == y_true).mean()) if n else 0.0,
        "macro_f1": float(np.mean([report[c]["f1"] for c in present])) if present else 0.0,
        "ece": expected_calibration_error(probs, y_true),
        "nll": nll,
        "classes": list(class_names),
        "classes_present": present,
        "per_class": {c: report[c] for c in present},
        "confusion_matrix": cm.tolist(),
    }
