"""Export a checkpoint to TorchScript or ONNX: a deployable model with the same predictions.

The exported graph takes the eval preset's normalised input (N×1×S×S float32, see
:mod:`ml.preprocessing`) and returns logits (N×7, class order ``EMOTIONS``). A JSON sidecar
(``<out>.json``) carries class names, preprocessing, temperature and the source checkpoint's
hash; the ONNX file also carries them as metadata properties.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from ml.checkpoint import (
    build_model,
    file_sha256,
    load_checkpoint,
    preprocessing_of,
)
from ml.classes import EMOTIONS


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
