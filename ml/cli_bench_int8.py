"""What 7-bit int8 weights cost against 8-bit ones: ``python -m ml.bench_int8 TRAIN VAL``.

For each checkpoint it quantises the fp32 weights twice, exactly as ``python -m ml quantize``
does (same calibration images), once with the shipped 7-bit weights and once with all 8 bits,
then prints, for each: batched faces/s at 1 and 2 threads through the product's ONNX Runtime
wrapper, and accuracy and agreement with fp32 on ``VAL``. On a CPU with VNNI both should run
at the same speed; on one without VNNI the 8-bit model saturates and loses accuracy (the reason
the shipped models use 7 bits; see docs/model_card.md, "Why 7-bit weights").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ml.benchmark import _rate, cpu_description
from ml.checkpoint import CheckpointError, build_model, load_checkpoint, preprocessing_of
from ml.data import load_dataset
from ml.predictor import WEIGHTS_DIR
from ml.preprocessing import crops_to_tensor
from ml.quantize import OnnxRuntimeModule, calibration_batch, quantize_int8


def _logits(module, x: np.ndarray, batch: int = 256) -> np.ndarray:
    with torch.inference_mode():
        return np.concatenate(
            [module(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)]
        )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ml.bench_int8", description=__doc__.split("\n")[0])
    p.add_argument("train", help="images the activation ranges are observed on (train split)")
    p.add_argument("val", help="labelled images for accuracy and agreement (validation split)")
    p.add_argument(
        "--weights",
        action="append",
        help="checkpoint (repeatable; default: both shipped ones)",
    )
    p.add_argument("--images", type=int, default=2048, help="calibration images (default 2048)")
    p.add_argument("--batch", type=int, default=64, help="faces per timed batch (default 64)")
    p.add_argument("--seconds", type=float, default=3.0, help="timing per case (default 3)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    weights = [Path(w) for w in args.weights or []] or [
        WEIGHTS_DIR / "fer-compact.pt",
        WEIGHTS_DIR / "fer-fast.pt",
    ]
    try:
        ckpts = [(w, load_checkpoint(w)) for w in weights]
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    train, val = load_dataset(args.train, progress=True), load_dataset(args.val, progress=True)
    if len(train) == 0 or len(val) == 0:
        print("error: no images in the train or validation folder", file=sys.stderr)
        return 2
    print(cpu_description(), f"torch {torch.__version__}")
    print(f"faces/s: batches of {args.batch}; accuracy on {len(val)} images of {args.val}")
    print(f"{'model':<28}{'weights':>8}{'1 thr':>9}{'2 thr':>9}{'accuracy':>10}{'= fp32':>8}")
    before = torch.get_num_threads()
    try:
        with tqdm(total=2 * len(ckpts), desc="quantise + time", leave=False) as bar:
            for w, ckpt in ckpts:
                # what both quantisations share: the inputs, the calibration sample, fp32's answers
                model, pre = build_model(ckpt), preprocessing_of(ckpt)
                x = crops_to_tensor(val.images, pre).numpy()
                calibration = calibration_batch(train.images, pre, args.images, seed=0)
                fp32 = _logits(model.eval(), x).argmax(1)
                batch = torch.from_numpy(x[: args.batch])
                for bits in (7, 8):
                    int8 = OnnxRuntimeModule(quantize_int8(model, calibration, weight_bits=bits))
                    rates = []
                    for threads in (1, 2):
                        torch.set_num_threads(threads)
                        rates.append(_rate(lambda m=int8, b=batch: m(b), args.batch, args.seconds))
                    pred = _logits(int8, x).argmax(1)
                    tqdm.write(
                        f"{w.name:<28}{f'{bits}-bit':>8}{rates[0]:>9.0f}{rates[1]:>9.0f}"
                        f"{(pred == val.labels).mean():>10.4f}{(pred == fp32).mean():>8.3f}"
                    )
                    bar.update()
    finally:
        torch.set_num_threads(before)
    return 0
