"""``python -m ml calibrate``: temperature scaling (Guo et al. 2017) fitted on a labelled set.

The fit: :mod:`ml.calibrate`; this module is its command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ml.calibrate import MIN_SAMPLES, CalibrationError, checked_temperature, softmax
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


def build_parser() -> argparse.ArgumentParser:
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
    before = classification_summary(softmax(logits, 1.0), ds.labels)
    after = classification_summary(softmax(logits, t), ds.labels)
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
