"""``python -m ml evaluate DATA_ROOT [--weights FILE] [--tta] [--json OUT] [--plot OUT.png]``."""

from __future__ import annotations

import argparse
import json
import sys

from ml.checkpoint import CheckpointError
from ml.data import DatasetError, load_dataset
from ml.evaluate import format_summary, plot_confusion_matrix
from ml.predictor import Predictor


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ml evaluate",
        description="Evaluate a checkpoint on a labelled image folder or CSV.",
    )
    p.add_argument("data", help="image folder <root>/<emotion>/*.jpg, or fer2013.csv[:Usage]")
    p.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    p.add_argument("--tta", action="store_true", help="average with the horizontally mirrored face")
    p.add_argument("--json", metavar="OUT", help="write the metrics as JSON to OUT ('-' = stdout)")
    p.add_argument("--plot", metavar="OUT.png", help="write the confusion matrix as a PNG")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out unreadable images (counted in the output) instead of failing",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        predictor = Predictor(args.weights, device=args.device, tta=args.tta)
        ds = load_dataset(args.data, on_error="skip" if args.skip_bad else "raise", progress=True)
    except (CheckpointError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    probs = predictor.predict_faces(ds.images)
    from ml.metrics import classification_summary

    summary = classification_summary(probs, ds.labels)
    summary.update(
        data=str(args.data),
        weights=str(predictor.path),
        model_version=predictor.describe()["version"],
        tta=args.tta,
        temperature=predictor.temperature,
        skipped=len(ds.skipped),
    )
    human = sys.stderr if args.json == "-" else sys.stdout
    print(f"{args.data}  weights={predictor.path.name}  tta={args.tta}", file=human)
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
        plot_confusion_matrix(summary, args.plot, title=f"{predictor.path.name} on {args.data}")
        print(f"confusion matrix → {args.plot}", file=human)
    return 0
