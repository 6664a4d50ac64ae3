"""``python -m ml benchmark``: classification faces/s and full-frame frames/s, at 1 and 2 threads.

What is measured and how: :mod:`ml.benchmark`; this module is its command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from ml.benchmark import (
    baseline_rates,
    cpu_description,
    faces_per_second,
    frames_per_second,
    peak_rss_mb,
    sample_frames,
)
from ml.checkpoint import CheckpointError
from ml.predictor import Predictor
from ml.runtime import PRECISIONS

DEFAULT_FACES = Path(__file__).resolve().parents[2] / "shared/datasets/fer2013/validation"


def _predictors(weights, device: str, precision: str | None) -> list[Predictor]:
    """One predictor per precision to time: both the int8 and the fp32 network where a
    checkpoint carries an int8 one, unless ``--precision`` names one."""
    if precision:
        return [Predictor(weights, device=device, precision=precision)]
    first = Predictor(weights, device=device)
    if first.precision == "int8":
        return [first, Predictor(weights, device=device, precision="fp32")]
    return [first]


def _measure(pred: Predictor, threads, crops, frames, seconds) -> tuple[str, dict]:
    name = f"{pred.path.name} {pred.precision}"
    n_params = sum(t.numel() for t in pred.model.parameters())
    rates = {}
    for t in threads:
        torch.set_num_threads(t)
        cv2.setNumThreads(t)
        rates[t] = faces_per_second(pred, crops, seconds)
        fps_frames = frames_per_second(pred, frames, seconds)
        print(
            f"{name:<28}{n_params:>10,}{t:>8}{rates[t]:>10.0f}{fps_frames:>10.1f}"
            f"{1000 / fps_frames:>10.1f}"
        )
    return name, rates


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ml benchmark", description=__doc__.split("\n")[0])
    p.add_argument("--weights", action="append", help="checkpoint(s) to compare (default: shipped)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure")
    p.add_argument("--faces", default=str(DEFAULT_FACES), help="image folder of real faces")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="time only this network (default: int8 and fp32 where a checkpoint has both)",
    )
    p.add_argument(
        "--no-baseline", action="store_true", help="skip the mini-Xception (64×64) speed baselines"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    try:
        threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        p.error(f"--threads takes comma-separated integers, not {args.threads!r}")
    frames, what = sample_frames(16, Path(args.faces))
    crops = np.random.default_rng(0).integers(0, 256, (args.batch, 48, 48), dtype=np.uint8)
    print(
        f"{cpu_description()}, {torch.get_num_threads()} torch threads "
        f"available, torch {torch.__version__}, OpenCV {cv2.__version__}"
    )
    print(
        f"faces/s: batch {args.batch} of 48×48 crops; frames/s: 640×480 frames with {what}, "
        "detect + classify"
    )
    print(
        f"{'model':<28}{'params':>10}{'threads':>8}{'faces/s':>10}{'frames/s':>10}{'ms/frame':>10}"
    )
    measured = []
    try:
        for w in args.weights or [None]:
            for pred in _predictors(w, args.device, args.precision):
                measured.append(_measure(pred, threads, crops, frames, args.seconds))
    except (CheckpointError, ValueError) as e:  # unreadable weights, int8 on a GPU, bad setting
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.no_baseline:
        baselines = baseline_rates(threads, args.batch, args.seconds, int8=args.precision != "fp32")
        for name, n, rates in baselines:
            for t in threads:
                print(f"{name:<28}{n:>10,}{t:>8}{rates[t]:>10.0f}{'':>10}{'':>10}")
        print("faces/s relative to the baselines (model ÷ baseline, same threads):")
        for model_name, rates in measured:
            for base_name, _, base in baselines:
                ratios = "  ".join(f"{t} thr {rates[t] / base[t]:.2f}×" for t in threads)
                print(f"  {model_name} vs {base_name}: {ratios}")
    print(f"peak memory (max RSS): {peak_rss_mb():.0f} MB")
    return 0
