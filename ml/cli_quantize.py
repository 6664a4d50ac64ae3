"""``python -m ml quantize``: an int8 network for CPU workers, run by ONNX Runtime.

The int8 network and its format: :mod:`ml.quantize`; this module is its command line.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import onnxruntime
import torch

from ml.checkpoint import build_model, load_checkpoint, preprocessing_of, save_checkpoint
from ml.data import load_dataset
from ml.metrics import classification_summary
from ml.predictor import Predictor, default_weights
from ml.quantize import INT8_FORMAT_VERSION, calibration_batch, quantize_int8, weights_digest


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ml quantize", description=__doc__.split("\n")[0])
    p.add_argument("data", help="images to observe activation ranges on (the train split)")
    p.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    p.add_argument(
        "--out", help="write the checkpoint with its int8 model here (default: in place)"
    )
    p.add_argument("--images", type=int, default=2048, help="calibration images (default 2048)")
    p.add_argument("--seed", type=int, default=0, help="which calibration images are drawn")
    p.add_argument("--val", help="labelled set to report fp32 vs int8 figures on (not used to fit)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.images < 1:
        print("error: --images must be at least 1", file=sys.stderr)
        return 2
    weights = Path(args.weights) if args.weights else default_weights()
    ckpt = load_checkpoint(weights)
    model = build_model(ckpt)
    ds = load_dataset(args.data, progress=True)
    if len(ds) == 0:
        print(f"error: no images in {args.data}", file=sys.stderr)
        return 2
    calibration = calibration_batch(ds.images, preprocessing_of(ckpt), args.images, args.seed)
    onnx_model = quantize_int8(model, calibration)
    section = {
        "format_version": INT8_FORMAT_VERSION,
        "runtime": f"onnxruntime {onnxruntime.__version__}, CPUExecutionProvider",
        "scheme": "static QDQ: 7-bit int8 weights per channel, uint8 activations per tensor (MinMax)",
        "weights_sha256": weights_digest(model.state_dict()),
        "calibration": {"data": str(args.data), "images": len(calibration), "seed": args.seed},
        "command": "python -m ml quantize "
        + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        "onnx": torch.frombuffer(bytearray(onnx_model), dtype=torch.uint8),
    }
    ckpt["int8"] = section
    out = Path(args.out) if args.out else weights
    save_checkpoint(out, ckpt)
    print(
        f"int8 model ({len(onnx_model) / 1e6:.1f} MB) calibrated on {len(calibration)} images of {args.data}"
    )
    if args.val:
        val = load_dataset(args.val, progress=True)
        figures = {}
        for precision in ("fp32", "int8"):
            probs = Predictor(out, device="cpu", precision=precision).predict_faces(val.images)
            s = classification_summary(probs, val.labels)
            figures[precision] = {k: s[k] for k in ("accuracy", "macro_f1", "ece", "nll")}
            print(
                f"{precision}: accuracy {s['accuracy']:.4f}  macro-F1 {s['macro_f1']:.4f}  "
                f"ECE {s['ece']:.4f}  on {len(val)} images of {args.val}"
            )
        section["metrics"] = {"data": str(args.val), "n": len(val), **figures}
        save_checkpoint(out, ckpt)
    print(f"wrote {out}", file=sys.stderr)
    return 0
