"""``python -m ml export --format torchscript|onnx``: a deployable model with the same predictions.

The exported graph takes the eval preset's normalised input (N×1×S×S float32, see
:mod:`ml.preprocessing`) and returns logits (N×7, class order ``EMOTIONS``). A JSON sidecar
(``<out>.json``) carries class names, preprocessing, temperature and the source checkpoint's
hash; the ONNX file also carries them as metadata properties.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

from ml.checkpoint import (
    CheckpointError,
    build_model,
    file_sha256,
    load_checkpoint,
    preprocessing_of,
)
from ml.classes import EMOTIONS
from ml.predictor import default_weights


def export_onnx(model: torch.nn.Module, out: Path, *, input_size: int) -> Path:
    """ONNX graph of ``model``: input "input" N×1×S×S, output "logits" N×7, batch dynamic."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.float().eval(),
            (torch.zeros(2, 1, input_size, input_size),),
            str(out),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
    return out


def export_model(weights: Path, fmt: str, out: Path) -> Path:
    ckpt = load_checkpoint(weights)
    model = build_model(ckpt).float().eval()
    pre = preprocessing_of(ckpt)
    example = torch.zeros(2, 1, pre.input_size, pre.input_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "class_names": list(EMOTIONS),
        "preprocessing": pre.to_dict(),
        "temperature": float(ckpt.get("calibration", {}).get("temperature", 1.0)),
        "source_checkpoint": str(weights),
        "source_sha256": file_sha256(weights),
        "input": "float32 N×1×S×S, (pixel/255 - mean)/std",
        "output": "logits N×7",
    }
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, example)
        traced.save(str(out))
    elif fmt == "onnx":
        export_onnx(model, out, input_size=pre.input_size)
        import onnx

        m = onnx.load(str(out))
        for k, v in meta.items():
            p = m.metadata_props.add()
            p.key, p.value = k, json.dumps(v)
        onnx.save(m, str(out))
    else:
        raise ValueError(f"unknown format {fmt!r}")
    out.with_suffix(out.suffix + ".json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


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
