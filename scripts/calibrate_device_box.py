"""Measure the mapping from the device's facemesh box to the server's Haar alt2 box.

The server frames its 48×48 crop around OpenCV's Haar box (ml/faces.py); the learner's browser
finds the face with Human's facemesh instead. On the same real frames (the calibration set:
five frames of each of ten GRID speakers, tests/data/grid, drawn 480 px wide as the recorder
draws them) this runs both, fits side = SIDE × mesh width and the centre shift (DX, DY in mesh
widths) by medians, then checks the fitted mapping: box IoU with the Haar box and the mean
absolute pixel difference between the device's crop and the server's. It also prints what the
other constants of static/js/device_face.js rest on: the eyes' aspect ratios, and the iris
offset that makes the speakers' median gaze pitch 0 (they read to the camera). Paste the
printed constants into static/js/device_face.js and the figures into docs/device.md.

    PYTHONPATH=. python scripts/calibrate_device_box.py [--backend webgl|cpu] [--frames DIR]
        [--plot docs/device_crops.png]

``--frames`` measures on another folder of frame_*.jpg (e.g. tests/data/head_pose/frontal)
instead of the calibration set.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from ml.classes import EMOTIONS
from ml.faces import detect_faces
from ml.predictor import Predictor
from scripts.device_harness import analyse, at_width, calibration_frames, frames


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
    ap.add_argument("--frames", type=Path, help="a folder of frame_*.jpg (default: GRID set)")
    ap.add_argument("--plot", type=Path, help="write each face's first crops, device over server")
    args = ap.parse_args()
    named = frames(folder=args.frames) if args.frames else calibration_frames()
    if not named:
        sys.exit(f"calibrate_device_box: no frame_*.jpg in {args.frames}")
    named = [(n, at_width(f)) for n, f in named]
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
    per_face(pairs, box[:, 2] / mw)
    eyes_and_gaze(device)
    agreement(pairs)
    if args.plot:
        plot(pairs, args.plot)


def plot(pairs, path: Path) -> None:
    """The device's crop (top) over the server's (bottom), the first frame of each face."""
    seen, columns = set(), []
    for name, _, face, r in pairs:
        who = name.split("/")[0]
        if who in seen:
            continue
        seen.add(who)
        device = np.array(r["crop"], dtype=np.uint8).reshape(48, 48)
        columns.append(np.vstack([device, np.full((2, 48), 255, np.uint8), face.crop]))
        columns.append(np.full((98, 2), 255, np.uint8))
    sheet = np.hstack(columns[:-1])
    cv2.imwrite(str(path), cv2.resize(sheet, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST))
    print(f"wrote {path}")


def per_face(pairs, ratio) -> None:
    """The side ratio per speaker (the folder part of a frame's name), to show its spread."""
    faces: dict[str, list[float]] = {}
    for (name, *_), r in zip(pairs, ratio, strict=True):
        faces.setdefault(name.split("/")[0] if "/" in name else "-", []).append(float(r))
    if len(faces) > 1:
        medians = {k: np.median(v) for k, v in faces.items()}
        print(
            "side/mesh width per face (median): "
            + ", ".join(f"{k} {v:.3f}" for k, v in sorted(medians.items()))
        )


def eyes_and_gaze(device: dict) -> None:
    """Eye aspect ratios, and the iris offset above the corners' line that would make the
    median gaze pitch 0 (gaze_pitch = -asin(offset_seen + IRIS_ABOVE_CORNERS))."""
    cues = [r["cues"] for r in device["results"] if r["cues"]["face"]]
    ear = np.array([(c["eye_open_left"] + c["eye_open_right"]) / 2 for c in cues])
    print(
        f"eye aspect ratio (mean of both eyes) over {len(ear)} faces: median {np.median(ear):.3f}, "
        f"5th-95th percentile {np.percentile(ear, 5):.3f}-{np.percentile(ear, 95):.3f}, "
        f"min {ear.min():.3f}"
    )
    pitch = np.array([c["gaze_pitch"] for c in cues if c["gaze_pitch"] is not None])
    yaw = np.array([c["gaze_yaw"] for c in cues if c["gaze_yaw"] is not None])
    if len(pitch):
        median_sin = float(np.median(-np.sin(np.radians(pitch))))
        print(
            f"gaze over {len(pitch)} faces: yaw median {np.median(yaw):+.1f}°, pitch median "
            f"{np.median(pitch):+.1f}° with IRIS_ABOVE_CORNERS = {device['irisAbove']}; "
            f"fitted IRIS_ABOVE_CORNERS = {device['irisAbove'] - median_sin:.2f}"
        )


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
