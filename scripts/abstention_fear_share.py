#!/usr/bin/env python
"""The share of frames shown as "fear" before and after abstention, on speaking faces.

Runs the shipped model through the server's path (``Predictor.predict_frames`` on full
frames: server-side face detection, the most certain face is the learner's, the
checkpoint's abstention threshold for the precision that runs) on the calibration frames of
``tests/data/grid/`` (five frames of each of ten GRID speakers; provenance in its README) and
on any video given with ``--video`` (e.g. the GRID clips themselves), and prints for each: frames analysed (a face found and classified),
the share labelled "fear" by the model's top class, the share shown as "fear" once uncertain
readings show "uncertain", and the share uncertain.

    python scripts/abstention_fear_share.py [--video CLIP.mp4 [CLIP ...]] [--every N]
        [--weights FILE] [--precision auto|fp32|int8] [--threshold T]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from ml.predictor import Predictor  # noqa: E402
from scripts.device_harness import GRID, calibration_frames  # noqa: E402


def video_frames(path: Path, every: int) -> Iterator[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SystemExit(f"error: cannot open video {path}")
    i = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        if i % every == 0:
            yield img
        i += 1
    cap.release()


def shares(predictor: Predictor, frames: Iterator[np.ndarray], threshold: float) -> dict:
    """Counts over the frames whose face was found and classified (as the server stores)."""
    n = fear = shown_fear = uncertain = 0
    for img in frames:
        faces = predictor.predict_frame(img)
        if not faces:
            continue
        face = faces[0]  # the server keeps the most certain face
        n += 1
        doubt = face.confidence < threshold
        fear += face.label == "fear"
        shown_fear += face.label == "fear" and not doubt
        uncertain += doubt
    return summary(n, (fear, shown_fear, uncertain))


def summary(n: int, counts: tuple[int, int, int]) -> dict:
    """Frames analysed, the (fear, shown as fear, uncertain) counts and their shares."""
    ratio = (lambda k: k / n) if n else (lambda k: None)
    return {
        "frames": n,
        "fear_before": ratio(counts[0]),
        "fear_after": ratio(counts[1]),
        "uncertain": ratio(counts[2]),
        "counts": counts,
    }


def report(name: str, s: dict) -> str:
    if not s["frames"]:
        return f"{name}: no frame with a face"
    fear, shown, doubt = s["counts"]
    return (
        f"{name}: {s['frames']} frames analysed; fear before abstention {fear} "
        f"({s['fear_before']:.1%}), shown as fear after {shown} ({s['fear_after']:.1%}), "
        f"uncertain {doubt} ({s['uncertain']:.1%})"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--video", nargs="+", action="extend", default=[], type=Path, help="clips")
    p.add_argument("--every", type=int, default=1, help="analyse every Nth frame of a video")
    p.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    p.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto")
    p.add_argument("--threshold", type=float, help="override the checkpoint's threshold")
    args = p.parse_args(argv)
    if args.every < 1:
        p.error("--every must be at least 1")
    predictor = Predictor(args.weights, device="cpu", precision=args.precision)
    d = predictor.describe()
    threshold = d["uncertainty_threshold"] if args.threshold is None else args.threshold
    print(f"weights={predictor.path.name} precision={d['precision']} threshold={threshold:.2f}")
    grid = (f for _, f in calibration_frames())
    print(report(f"{GRID.relative_to(ROOT)} (calibration set)", shares(predictor, grid, threshold)))
    each = [shares(predictor, video_frames(v, args.every), threshold) for v in args.video]
    for video, s in zip(args.video, each, strict=True):
        print(report(str(video), s))
    if len(each) > 1:
        n = sum(s["frames"] for s in each)
        counts = tuple(sum(s["counts"][k] for s in each) for k in range(3))
        print(report(f"all {len(each)} clips", summary(n, counts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
