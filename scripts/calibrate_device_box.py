"""Measure the mapping from the device's facemesh box to the server's Haar alt2 box.

The server frames its 48×48 crop around OpenCV's Haar box (ml/faces.py); the learner's browser
finds the face with Human's facemesh instead. On the same real frames (tests/data/talking_head)
this runs both, fits side = SIDE × mesh width and the centre shift (DX, DY in mesh widths) by
medians, then checks the fitted mapping: box IoU with the Haar box and the mean absolute pixel
difference between the device's crop and the server's. Paste the printed HAAR_FROM_MESH into
static/js/device_face.js and the figures into docs/device.md.

    PYTHONPATH=. python scripts/calibrate_device_box.py [--backend webgl|cpu] [--frames DIR]

``--frames`` measures on another folder of frame_*.jpg (e.g. tests/data/head_pose/frontal, a
second face with a clear licence) instead of the talking head.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ml.classes import EMOTIONS
from ml.faces import detect_faces
from ml.predictor import Predictor
from scripts.device_harness import FRAMES, analyse, frames


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / (aw * ah + bw * bh - inter)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="webgl", choices=["webgl", "cpu"])
    ap.add_argument("--frames", type=Path, default=FRAMES, help="a folder of frame_*.jpg")
    args = ap.parse_args()
    named = frames(folder=args.frames)
    if not named:
        sys.exit(f"calibrate_device_box: no frame_*.jpg in {args.frames}")
    pictures = [f for _, f in named]
    device = analyse(pictures, backend=args.backend, keep_crops=True)
    pairs = []
    for (name, frame), r in zip(named, device["results"], strict=True):
        haar = detect_faces(frame)
        if not haar or not r["mesh"]:
            print(f"{name}: skipped (haar {len(haar)} faces, device face {bool(r['mesh'])})")
            continue
        # Haar now and then adds a spurious small box: take the one on the mesh's face
        pairs.append((name, frame, max(haar, key=lambda f: iou(f.box, r["mesh"])), r))
    mesh = np.array([p[3]["mesh"] for p in pairs], dtype=float)
    box = np.array([p[2].box for p in pairs], dtype=float)
    mw = mesh[:, 2]
    side = np.median(box[:, 2] / mw)
    dx = np.median(((box[:, 0] + box[:, 2] / 2) - (mesh[:, 0] + mesh[:, 2] / 2)) / mw)
    dy = np.median(((box[:, 1] + box[:, 3] / 2) - (mesh[:, 1] + mesh[:, 3] / 2)) / mw)
    print(f"frames: {len(named)}, both found a face: {len(pairs)}, backend: {device['backend']}")
    print(
        "fitted HAAR_FROM_MESH = "
        + json.dumps({"side": round(side, 3), "dx": round(dx, 3), "dy": round(dy, 3)})
    )
    # check: the mapping applied to each frame vs the Haar box (the device's crops in this run
    # used the mapping the module had when it ran: rerun after pasting the fitted one in)
    ious, diffs = [], []
    for (_, _frame, face, r), m in zip(pairs, mesh, strict=True):
        s = side * m[2]
        cx, cy = m[0] + m[2] / 2 + dx * m[2], m[1] + m[3] / 2 + dy * m[2]
        ious.append(iou((cx - s / 2, cy - s / 2, s, s), face.box))
        crop = np.array(r["crop"], dtype=np.uint8).reshape(48, 48)
        diffs.append(float(np.abs(crop.astype(int) - face.crop.astype(int)).mean()))
    spread = np.std(box[:, 2] / mw)
    print(f"side/mesh width: median {side:.3f}, sd {spread:.3f}")
    print(
        f"IoU of the mapped box with the Haar box: median {np.median(ious):.3f}, min {min(ious):.3f}"
    )
    print(
        f"device crop vs server crop, mean |difference| (0-255): median {np.median(diffs):.1f}, "
        f"max {max(diffs):.1f}"
    )
    agreement(pairs)


def agreement(pairs) -> None:
    """The shipped model on the device's crops and on the server's crops of the same frames:
    do they give the same label, and how far apart are the probabilities?"""
    predictor = Predictor()
    dev = np.stack([np.array(r["crop"], dtype=np.uint8).reshape(48, 48) for *_, r in pairs])
    srv = np.stack([face.crop for _, _, face, _ in pairs])
    p_dev, p_srv = predictor.predict_faces(dev), predictor.predict_faces(srv)
    same = (p_dev.argmax(1) == p_srv.argmax(1)).mean()
    tv = 0.5 * np.abs(p_dev - p_srv).sum(1)  # total variation distance per frame
    print(
        f"labels, device crop vs server crop ({predictor.describe()['name']}, "
        f"{predictor.precision}): {same:.0%} agree over {len(pairs)} frames; "
        f"probability distance (total variation) median {np.median(tv):.3f}, max {tv.max():.3f}"
    )
    for name, p in (("device", p_dev), ("server", p_srv)):
        counts = np.bincount(p.argmax(1), minlength=len(EMOTIONS))
        print(
            f"  {name} labels: "
            + ", ".join(f"{e} {n}" for e, n in zip(EMOTIONS, counts, strict=True) if n)
        )


if __name__ == "__main__":
    main()
