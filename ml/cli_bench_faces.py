"""Face-detector comparison on real face photos: ``python -m ml.bench_faces [--n 300]``.

Positives: FER2013 validation faces (real web photos, 48×48) upscaled to 90–220 px and pasted
1–3 per 640×480 frame, onto real non-face photos (scikit-image's sample images) or plain
backgrounds. Negatives: those non-face photos alone. For each OpenCV cascade it prints recall
(IoU ≥ 0.3 with the pasted face), false positives per frame, precision, ms per frame, and how
the detected box relates to the pasted crop (used to choose the crop margin).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from ml.data import load_image_folder
from ml.faces import DetectorConfig, detect_faces
from ml.synth import background, iou, paste_face

NONFACE_PHOTOS = [
    "coffee",
    "chelsea",
    "rocket",
    "horse",
    "coins",
    "brick",
    "grass",
    "gravel",
    "page",
    "text",
    "moon",
    "hubble_deep_field",
    "motorcycle_left",
    "retina",
]


def nonface_backgrounds() -> list[np.ndarray]:
    try:
        import skimage.data as skd
    except ImportError:
        return []
    out = []
    for name in NONFACE_PHOTOS:
        try:
            img = getattr(skd, name)()
        except Exception:
            continue
        if img.dtype != np.uint8:
            continue
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        elif img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGR)
        else:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        out.append(cv2.resize(img, (640, 480), interpolation=cv2.INTER_AREA))
    return out


def build_scenes(faces: np.ndarray, bgs: list[np.ndarray], seed: int = 0):
    rng = np.random.default_rng(seed)
    scenes, i = [], 0
    while i < len(faces):
        k = int(rng.integers(1, 4))
        chunk = faces[i : i + k]
        i += k
        bg = bgs[int(rng.integers(len(bgs)))] if bgs and rng.random() < 0.7 else background(seed=i)
        frame = bg.copy()
        slot = 640 // len(chunk)
        boxes = []
        for j, f in enumerate(chunk):
            side = int(rng.integers(90, min(220, slot - 4)))
            x = j * slot + int(rng.integers(0, slot - side))
            y = int(rng.integers(0, 480 - side))
            boxes.append(paste_face(frame, f, x, y, side))
        scenes.append((frame, boxes))
    return scenes


def evaluate_detector(cfg: DetectorConfig, scenes, negatives) -> dict:
    tp = fn = fp = 0
    ratios, offsets = [], []
    t0 = time.perf_counter()
    for frame, boxes in scenes:
        dets = [f.box for f in detect_faces(frame, cfg)]
        used = set()
        for b in boxes:
            best = max(range(len(dets)), key=lambda k: iou(dets[k], b), default=None)
            if best is not None and best not in used and iou(dets[best], b) >= 0.3:
                used.add(best)
                tp += 1
                d = dets[best]
                ratios.append(b[2] / d[2])
                offsets.append(
                    (
                        (b[0] + b[2] / 2 - d[0] - d[2] / 2) / d[2],
                        (b[1] + b[3] / 2 - d[1] - d[3] / 2) / d[3],
                    )
                )
            else:
                fn += 1
        fp += len(dets) - len(used)
    neg_fp = sum(len(detect_faces(n, cfg)) for n in negatives)
    elapsed = time.perf_counter() - t0
    frames = len(scenes) + len(negatives)
    return {
        "recall": tp / max(1, tp + fn),
        "precision": tp / max(1, tp + fp + neg_fp),
        "fp_per_frame": (fp + neg_fp) / max(1, frames),
        "neg_fp": neg_fp,
        "ms_per_frame": 1000 * elapsed / max(1, frames),
        "crop_over_box": float(np.median(ratios)) if ratios else float("nan"),
        "center_offset": tuple(float(v) for v in np.median(np.array(offsets), axis=0).round(3))
        if offsets
        else None,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ml.bench_faces", description=__doc__)
    p.add_argument(
        "--data",
        default=str(Path(__file__).resolve().parents[2] / "shared/datasets/fer2013/validation"),
    )
    p.add_argument("--n", type=int, default=300, help="number of faces")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    cv2.setNumThreads(args.threads)
    ds = load_image_folder(args.data)
    idx = np.random.default_rng(0).permutation(len(ds))[: args.n]
    bgs = nonface_backgrounds()
    scenes = build_scenes(ds.images[idx], bgs)
    negatives = bgs + [cv2.flip(b, 1) for b in bgs]
    print(
        f"{args.n} FER2013 validation faces in {len(scenes)} frames (640×480); "
        f"{len(negatives)} face-free real photos; OpenCV {cv2.__version__}, {args.threads} thread(s)"
    )
    alt, alt2 = "haarcascade_frontalface_alt.xml", "haarcascade_frontalface_alt2.xml"
    default = "haarcascade_frontalface_default.xml"
    candidates = {
        "default 640 mn=5": DetectorConfig(cascade=default, max_side=640, min_neighbors=5),
        "alt 640 mn=5": DetectorConfig(cascade=alt, max_side=640, min_neighbors=5),
        "alt2 640 mn=5": DetectorConfig(cascade=alt2, max_side=640, min_neighbors=5),
        "default 320 mn=5": DetectorConfig(cascade=default, max_side=320, min_neighbors=5),
        "alt 320 mn=5": DetectorConfig(cascade=alt, max_side=320, min_neighbors=5),
        "alt2 320 mn=5": DetectorConfig(cascade=alt2, max_side=320, min_neighbors=5),
        "alt2 320 mn=4": DetectorConfig(cascade=alt2, max_side=320, min_neighbors=4),
        "alt2 320 mn=5 sf=1.05": DetectorConfig(
            cascade=alt2, max_side=320, min_neighbors=5, scale_factor=1.05
        ),
        "alt2 320 mn=3 (ours)": DetectorConfig(),
    }
    print(
        f"{'detector':<20}{'recall':>8}{'precision':>10}{'FP/frame':>10}{'neg FP':>8}"
        f"{'ms/frame':>10}{'crop/box':>10}  center offset (dx, dy)/box"
    )
    for name, cfg in candidates.items():
        r = evaluate_detector(cfg, scenes, negatives)
        print(
            f"{name:<20}{r['recall']:>8.3f}{r['precision']:>10.3f}{r['fp_per_frame']:>10.3f}"
            f"{r['neg_fp']:>8d}{r['ms_per_frame']:>10.1f}{r['crop_over_box']:>10.3f}  {r['center_offset']}"
        )
    return 0
