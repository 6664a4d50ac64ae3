"""``python -m ml export --format torchscript|onnx``: a deployable model with the same predictions.

The work is :func:`ml.export.export_model`; this module is its command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ml.checkpoint import CheckpointError
from ml.export import export_model
from ml.predictor import default_weights


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ml export", description=__doc__.split("\n")[0])
    p.add_argument("--format", required=True, choices=["torchscript", "onnx"])
    p.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    p.add_argument("--out", help="output file (default: next to the weights, .ts / .onnx)")
    args = p.parse_args(argv)
    weights = Path(args.weights) if args.weights else default_weights()
    suffix = ".ts" if args.format == "torchscript" else ".onnx"
    out = Path(args.out) if args.out else weights.with_suffix(suffix)
    try:
        export_model(weights, args.format, out)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"exported {weights} → {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0
