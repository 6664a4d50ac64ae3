"""Selective classification: when the model should abstain (``python -m ml risk-coverage``).

A reading whose score is below a threshold is *uncertain*: not shown as an emotion and left
out of the emotion mix. The score is the calibrated top probability (``max_prob``); the
margin between the top two probabilities is reported beside it as an alternative.

For each threshold t, *coverage* is the share of faces with score >= t (those still shown)
and *selective accuracy* the accuracy on them; the risk–coverage curve is 1 - selective
accuracy against coverage, and AURC its area (lower is better; Geifman & El-Yaniv 2017).

The rule that picks the default threshold (:func:`choose_threshold`), stated in advance and
not tuned to any video: **the lowest threshold on a 0.01 grid whose selective accuracy on the
validation split reaches TARGET_ACCURACY** (0.80: four in five emotions shown are right),
i.e. the highest coverage that meets the target. When no grid point reaches it, the grid point
with the best selective accuracy at a coverage of at least MIN_COVERAGE is taken and the dict
says the target was not met.
"""

from __future__ import annotations

import numpy as np

TARGET_ACCURACY = 0.80
MIN_COVERAGE = 0.10
GRID = np.round(np.arange(0.0, 1.0, 0.01), 2)
#: the thresholds the CLI's table always shows, besides the chosen one
NAMED_THRESHOLDS = (0.4, 0.5, 0.6)


def rule(target: float = TARGET_ACCURACY) -> str:
    """The rule :func:`choose_threshold` applies, in words (stored with the threshold)."""
    return (
        f"lowest max-probability threshold on a 0.01 grid whose selective accuracy on the "
        f"validation split reaches {target:.2f} (the highest coverage meeting that target)"
    )


def scores(probs: np.ndarray) -> dict[str, np.ndarray]:
    """The confidence scores of each row: top probability, and top-1 minus top-2."""
    p = np.asarray(probs, dtype=np.float64)
    top2 = np.sort(p, axis=1)[:, -2:] if p.shape[1] > 1 else np.c_[np.zeros(len(p)), p]
    return {"max_prob": top2[:, 1], "margin": top2[:, 1] - top2[:, 0]}


def _curve(score: np.ndarray, correct: np.ndarray) -> dict:
    """Coverage and selective accuracy at every distinct score (threshold = that score)."""
    order = np.argsort(-score, kind="stable")
    s, c = score[order], correct[order].astype(np.float64)
    n = len(s)
    hits = np.cumsum(c)
    k = np.arange(1, n + 1)
    # a threshold keeps every tied score: the curve's points are the last index of each tie
    last = np.r_[np.nonzero(np.diff(s))[0], n - 1]
    risk = 1 - hits / k
    return {
        "thresholds": s[last],
        "coverage": k[last] / n,
        "accuracy": hits[last] / k[last],
        "aurc": float(risk.mean()),
    }


def _check(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    p, y = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    if p.ndim != 2 or len(p) != len(y) or len(p) == 0:
        raise ValueError(f"need N×C probabilities and N labels, got {p.shape} and {y.shape}")
    return p, y


def risk_coverage(probs: np.ndarray, labels: np.ndarray) -> dict:
    """The risk–coverage curve of each score: ``{"n", "accuracy", "max_prob": {...},
    "margin": {...}}``, each score's dict with ``thresholds`` (descending), ``coverage``,
    ``accuracy`` (selective accuracy at that coverage) and ``aurc``."""
    p, y = _check(probs, labels)
    correct = p.argmax(axis=1) == y
    out = {"n": len(y), "accuracy": float(correct.mean())}
    for name, s in scores(p).items():
        out[name] = _curve(s, correct)
    return out


def at_threshold(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Coverage and selective accuracy when faces with top probability < ``threshold``
    abstain (selective accuracy is None when nothing is covered)."""
    p, y = _check(probs, labels)
    keep = scores(p)["max_prob"] >= threshold
    acc = float((p.argmax(axis=1) == y)[keep].mean()) if keep.any() else None
    return {"threshold": float(threshold), "coverage": float(keep.mean()), "accuracy": acc}


def choose_threshold(probs: np.ndarray, labels: np.ndarray, target: float = TARGET_ACCURACY):
    """The ``"abstention"`` dict a checkpoint stores: the threshold :func:`rule` states, with
    its coverage and selective accuracy, the AURC of both scores and the curve on the grid."""
    p, y = _check(probs, labels)
    grid = [at_threshold(p, y, t) for t in GRID]
    met = [g for g in grid if g["accuracy"] is not None and g["accuracy"] >= target]
    if met:
        chosen = min(met, key=lambda g: g["threshold"])
    else:
        wide = [g for g in grid if g["coverage"] >= MIN_COVERAGE and g["accuracy"] is not None]
        chosen = max(wide or grid[:1], key=lambda g: (g["accuracy"] or 0.0, g["coverage"]))
    rc = risk_coverage(p, y)
    return {
        "score": "max_prob",
        "threshold": chosen["threshold"],
        "coverage": chosen["coverage"],
        "selective_accuracy": chosen["accuracy"],
        "target_accuracy": target,
        "target_met": bool(met),
        "rule": rule(target),
        "n": len(y),
        "accuracy": rc["accuracy"],
        "aurc": {"max_prob": rc["max_prob"]["aurc"], "margin": rc["margin"]["aurc"]},
        # [threshold, coverage, selective accuracy] on the grid
        "curve": [[g["threshold"], _r(g["coverage"]), _r(g["accuracy"])] for g in grid],
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 5)


def default_threshold(ckpt: dict, precision: str | None = None) -> float:
    """The checkpoint's abstention threshold for a precision ("fp32"/"int8"): that precision's
    own where measured, else the checkpoint's default, else 0.0 (never abstain)."""
    section = ckpt.get("abstention") or {}
    own = (section.get("by_precision") or {}).get(precision or "") or {}
    value = own.get("threshold", section.get("threshold", 0.0))
    return float(value)
