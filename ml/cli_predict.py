"""``python -m ml predict PATH...``: faces and emotions in images or videos, one JSON line per face."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from ml.checkpoint import CheckpointError
from ml.predictor import FacePrediction, Predictor, TemporalSmoother

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm"}
VIDEO_EXT = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


class InputError(Exception):
    pass


def read_image(path: Path) -> np.ndarray:
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise InputError(f"{path}: not a readable image")
    return img


def iter_video(path: Path, every_n: int, fps: float | None):
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"{path}: not a readable video")
    src_fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    step = max(1, round(src_fps / fps)) if fps else max(1, every_n)
    idx, yielded = 0, 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if idx % step == 0:
                yielded += 1
                yield idx, idx / src_fps, frame, src_fps / step
            idx += 1
    finally:
        cap.release()
    if yielded == 0:
        raise InputError(f"{path}: video has no decodable frames")


def annotate(frame: np.ndarray, preds: list[FacePrediction]) -> np.ndarray:
    out = frame.copy()
    for p in preds:
        x, y, w, h = p.box
        cv2.rectangle(out, (x, y), (x + w, y + h), (60, 200, 60), 2)
        text = f"{p.label} {p.confidence:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 2)
        cv2.rectangle(out, (x, max(0, y - th - 8)), (x + tw + 6, y), (60, 200, 60), -1)
        cv2.putText(out, text, (x + 3, y - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 2)
    return out


def annotate_folder(out: str, n_inputs: int) -> Path | None:
    """The folder ``--annotate OUT`` names, or None when OUT is the one output file: OUT is a
    folder for several inputs, when it is one already, ends in a slash or has no extension."""
    path = Path(out)
    if path.is_dir() or out.endswith(("/", os.sep)) or not path.suffix:
        return path
    if n_inputs > 1:  # "x.png" for several inputs: a typo for a folder, not a folder "x.png"
        raise InputError(
            f"--annotate {out}: {n_inputs} inputs need a folder (a path ending in / or without "
            "an extension), not a file name"
        )
    return None


def write_image(target: Path, image: np.ndarray) -> None:
    try:
        ok = cv2.imwrite(str(target), image)
    except cv2.error as e:  # e.g. "could not find a writer for the specified extension"
        raise InputError(f"could not write {target}: {e.err}") from None
    if not ok:
        raise InputError(f"could not write {target}")


def records(file: str, frame: int, t: float, preds: list[FacePrediction]) -> list[dict]:
    if not preds:
        return [
            {
                "file": file,
                "frame": frame,
                "t": round(t, 3),
                "face": False,
                "box": None,
                "label": None,
                "confidence": None,
                "probs": None,
            }
        ]
    return [
        {
            "file": file,
            "frame": frame,
            "t": round(t, 3),
            "face": True,
            "face_index": i,
            **p.to_dict(),
        }
        for i, p in enumerate(preds)
    ]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ml predict", description="Detect faces and classify their expression."
    )
    p.add_argument("paths", nargs="+", help="image or video files")
    p.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    p.add_argument("--tta", action="store_true", help="average with the mirrored face")
    p.add_argument("--every-n", type=int, default=1, help="video: analyse every n-th frame")
    p.add_argument("--fps", type=float, help="video: analyse about this many frames per second")
    p.add_argument(
        "--smooth",
        type=float,
        default=0.0,
        metavar="HALF_LIFE",
        help="video: smooth the largest face's probabilities (EMA half-life, seconds)",
    )
    p.add_argument(
        "--annotate",
        metavar="OUT",
        help="write annotated copies: a file for one input, else a folder (also a path ending "
        "in / or without an extension); missing folders are created",
    )
    p.add_argument("--device", default="auto")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.every_n < 1 or (args.fps is not None and args.fps <= 0):
        print("error: --every-n must be ≥ 1 and --fps > 0", file=sys.stderr)
        return 2
    try:
        predictor = Predictor(args.weights, device=args.device, tta=args.tta)
    except (CheckpointError, ValueError) as e:  # ValueError: a bad ML_PRECISION
        print(f"error: {e}", file=sys.stderr)
        return 2
    out_dir = None
    if args.annotate:
        try:
            out_dir = annotate_folder(args.annotate, len(args.paths))
            (out_dir or Path(args.annotate).parent).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            print(f"error: --annotate {args.annotate}: {e.strerror or e}", file=sys.stderr)
            return 2
        except InputError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    failures = 0
    for raw in args.paths:
        path = Path(raw)
        try:
            if not path.is_file():
                raise InputError(f"{path}: no such file")
            target = None
            if args.annotate:
                target = (
                    out_dir / f"{path.stem}.annotated{path.suffix}"
                    if out_dir
                    else Path(args.annotate)
                )
            if path.suffix.lower() in VIDEO_EXT:
                _predict_video(predictor, path, args, target)
            else:
                img = read_image(path)
                preds = predictor.predict_frame(img)
                for r in records(str(path), 0, 0.0, preds):
                    print(json.dumps(r), flush=True)
                if target is not None:
                    write_image(target, annotate(img, preds))
        except cv2.error as e:  # OpenCV refused this input: one line, not a traceback
            failures += 1
            print(f"error: {path}: OpenCV failed in {e.func}: {e.err}", file=sys.stderr)
        except InputError as e:
            failures += 1
            print(f"error: {e}", file=sys.stderr)
    return 1 if failures else 0


def _predict_video(predictor: Predictor, path: Path, args, target: Path | None) -> None:
    writer = None
    smoother = TemporalSmoother(half_life=args.smooth) if args.smooth > 0 else None
    try:
        for idx, t, frame, out_fps in iter_video(path, args.every_n, args.fps):
            preds = predictor.predict_frame(frame)
            if smoother is not None and preds:
                from ml.classes import EMOTIONS

                p = preds[0]
                s = smoother.update([p.probs[c] for c in EMOTIONS], t)
                i = int(np.argmax(s))
                p.probs = {c: round(float(v), 5) for c, v in zip(EMOTIONS, s, strict=True)}
                p.label, p.confidence = EMOTIONS[i], round(float(s[i]), 5)
            for r in records(str(path), idx, t, preds):
                print(json.dumps(r), flush=True)
            if target is not None:
                if writer is None:
                    h, w = frame.shape[:2]
                    out = target.with_suffix(".mp4")
                    writer = cv2.VideoWriter(
                        str(out), cv2.VideoWriter_fourcc(*"mp4v"), out_fps, (w, h)
                    )
                    if not writer.isOpened():
                        raise InputError(f"could not open {out} for writing (mp4v video)")
                writer.write(annotate(frame, preds))
    finally:
        if writer is not None:
            writer.release()
