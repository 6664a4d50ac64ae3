"""``python -m ml calibrate``: temperature scaling (Guo et al. 2017) fitted on a labelled set.

One scalar T divides the logits; it is chosen to minimise the negative log-likelihood on the
given set (use the validation split, never test data). Accuracy is unchanged (argmax is
invariant to T); calibration (ECE, NLL) usually improves. The temperature is written into
the checkpoint under ``calibration`` and every Predictor applies it.

T is searched in [0.05, 20] and stays 1 unless the NLL improves. A set of fewer than
``--min-samples`` (200) images, or one on which T ends on a bound (degenerate logits: all
right by huge margins pushes T to 0, all wrong to infinity), is refused: nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ml.checkpoint import (
    build_model,
    half_precision,
    load_checkpoint,
    preprocessing_of,
    save_checkpoint,
)
from ml.data import load_dataset
from ml.evaluate import predict_logits
from ml.metrics import classification_summary
from ml.predictor import default_weights

T_BOUNDS = (0.05, 20.0)
MIN_SAMPLES = 200


class CalibrationError(ValueError):
    """The set cannot support a temperature: too few images, or degenerate logits."""


def _nll(z: torch.Tensor, y: torch.Tensor, t: float) -> float:
    return float(torch.nn.functional.cross_entropy(z / t, y))


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, bounds=T_BOUNDS, steps: int = 80
) -> float:
    """T in ``bounds`` minimising mean cross-entropy of softmax(logits / T); 1 unless better.

    The NLL is convex in 1/T, hence unimodal in log T: a golden-section search over log T
    finds its minimum, or the bound the logits push it to.
    """
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    a, b = np.log(bounds[0]), np.log(bounds[1])
    g = (np.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = _nll(z, y, np.exp(c)), _nll(z, y, np.exp(d))
    for _ in range(steps):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = _nll(z, y, np.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = _nll(z, y, np.exp(d))
    t = float(np.exp((a + b) / 2))
    return t if _nll(z, y, t) < _nll(z, y, 1.0) - 1e-9 else 1.0  # not for rounding noise


def checked_temperature(
    logits: np.ndarray, labels: np.ndarray, min_samples: int = MIN_SAMPLES
) -> float:
    """:func:`fit_temperature`, refused (CalibrationError) on too small a set or at a bound."""
    n = len(labels)
    if n < min_samples:
        raise CalibrationError(
            f"{n} labelled images are too few to fit a temperature (at least {min_samples}: "
            "use the validation split; --min-samples)"
        )
    t = fit_temperature(logits, labels)
    lo, hi = T_BOUNDS
    if not lo * 1.001 < t < hi / 1.001:
        raise CalibrationError(
            f"the fitted temperature ran into its bound ({t:.3g}, allowed {lo:g}..{hi:g}): the "
            "logits are degenerate on this set (all right by huge margins, or all wrong)"
        )
    return t


def _softmax(z: np.ndarray, t: float) -> np.ndarray:
    e = np.exp((z - z.max(axis=1, keepdims=True)) / t)
    return e / e.sum(axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ml calibrate", description=__doc__.split("\n")[0])
    p.add_argument("data", help="labelled set to fit on (the validation split)")
    p.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    p.add_argument("--out", help="write the calibrated checkpoint here (default: in place)")
    p.add_argument(
        "--min-samples",
        type=int,
        default=MIN_SAMPLES,
        help=f"refuse a set smaller than this (default {MIN_SAMPLES})",
    )
    p.add_argument(
        "--half",
        action="store_true",
        help="store the weights as float16: half the file (a 7.8 M-param model in 16 MB, not "
        "31); readers cast them back to float32, and the temperature is fitted on them",
    )
    args = p.parse_args(argv)
    weights = Path(args.weights) if args.weights else default_weights()
    ckpt = load_checkpoint(weights)
    if args.half:
        if "int8" in ckpt:  # made from the float32 weights: it would no longer match them
            print(
                f"error: --half: {weights} carries an int8 network made from its float32 "
                "weights; halve the weights first, then run quantize; nothing written",
                file=sys.stderr,
            )
            return 2
        ckpt["state_dict"] = half_precision(ckpt["state_dict"])
    model = build_model(ckpt)
    ds = load_dataset(args.data)
    logits = predict_logits(model, ds.images, pre=preprocessing_of(ckpt))
    try:
        t = checked_temperature(logits, ds.labels, args.min_samples)
    except CalibrationError as e:
        print(f"error: {e}; nothing written", file=sys.stderr)
        return 2
    before = classification_summary(_softmax(logits, 1.0), ds.labels)
    after = classification_summary(_softmax(logits, t), ds.labels)
    ckpt["calibration"] = {
        "temperature": t,
        "fitted_on": str(args.data),
        "n": len(ds),
        "ece_before": before["ece"],
        "ece_after": after["ece"],
        "nll_before": before["nll"],
        "nll_after": after["nll"],
    }
    out = Path(args.out) if args.out else weights
    save_checkpoint(out, ckpt)
    print(f"temperature {t:.4f} fitted on {len(ds)} images of {args.data}")
    print(
        f"ECE {before['ece']:.4f} → {after['ece']:.4f}   NLL {before['nll']:.4f} → {after['nll']:.4f}"
        f"   accuracy {after['accuracy']:.4f} (unchanged)"
    )
    print(f"wrote {out}", file=sys.stderr)
    return 0
