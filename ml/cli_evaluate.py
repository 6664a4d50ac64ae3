"""``python -m ml evaluate DATA_ROOT [--weights FILE ...] [--tta] [--precision P] [--json OUT] [--plot OUT.png]``.

It evaluates what a CPU worker runs: the checkpoint's int8 network where it carries one
(``--precision fp32`` for the float network).

Several ``--weights`` evaluate their ensemble: the mean of each model's calibrated
probabilities.
"""

from __future__ import annotations

import argparse
import json
import sys

from ml.checkpoint import CheckpointError
from ml.data import DatasetError, load_dataset
from ml.evaluate import format_summary, plot_confusion_matrix
from ml.predictor import Predictor
from ml.runtime import PRECISIONS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ml evaluate",
        description="Evaluate a checkpoint on a labelled image folder or CSV.",
    )
    p.add_argument("data", help="image folder <root>/<emotion>/*.jpg, or fer2013.csv[:Usage]")
    p.add_argument(
        "--weights",
        action="append",
        help="checkpoint (default: the shipped weights); repeat to evaluate an ensemble",
    )
    p.add_argument("--tta", action="store_true", help="average with the horizontally mirrored face")
    p.add_argument("--json", metavar="OUT", help="write the metrics as JSON to OUT ('-' = stdout)")
    p.add_argument("--plot", metavar="OUT.png", help="write the confusion matrix as a PNG")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="network to run on CPU (default ML_PRECISION or auto: the int8 one where shipped)",
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out unreadable images (counted in the output) instead of failing",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        predictors = [
            Predictor(w, device=args.device, tta=args.tta, precision=args.precision)
            for w in (args.weights or [None])
        ]
        ds = load_dataset(args.data, on_error="skip" if args.skip_bad else "raise", progress=True)
    except (CheckpointError, DatasetError, ValueError) as e:  # ValueError: a bad ML_PRECISION
        print(f"error: {e}", file=sys.stderr)
        return 2
    probs = sum(p.predict_faces(ds.images) for p in predictors) / len(predictors)
    from ml.metrics import classification_summary

    summary = classification_summary(probs, ds.labels)
    one = len(predictors) == 1
    names = [p.path.name for p in predictors]
    summary.update(
        data=str(args.data),
        weights=str(predictors[0].path) if one else [str(p.path) for p in predictors],
        model_version=predictors[0].describe()["version"]
        if one
        else [p.describe()["version"] for p in predictors],
        tta=args.tta,
        precision=predictors[0].precision if one else [p.precision for p in predictors],
        temperature=predictors[0].temperature if one else [p.temperature for p in predictors],
        skipped=len(ds.skipped),
    )
    human = sys.stderr if args.json == "-" else sys.stdout
    label = names[0] if one else "ensemble of " + " + ".join(names)
    precision = "+".join(sorted({p.precision for p in predictors}))
    print(f"{args.data}  weights={label}  precision={precision}  tta={args.tta}", file=human)
    print(format_summary(summary), file=human)
    if ds.skipped:
        print(
            f"skipped {len(ds.skipped)} file(s), e.g. {ds.skipped[0][0]}: {ds.skipped[0][1]}",
            file=human,
        )
    if args.json:
        text = json.dumps(summary, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    if args.plot:
        plot_confusion_matrix(summary, args.plot, title=f"{label} on {args.data}")
        print(f"confusion matrix → {args.plot}", file=human)
    return 0
