"""Synthetic webcam-like frames built from real face crops, for tests, benchmarks and demos.

A face crop (e.g. a FER2013 48×48 image) is upscaled and pasted into a larger frame at a
known position, so detection and classification can be checked against ground truth.
"""

from __future__ import annotations

import cv2
import numpy as np


def background(h: int = 480, w: int = 640, seed: int = 0) -> np.ndarray:
    """A plain but not flat BGR background: smooth colour gradients plus mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    for c in range(3):
        a, b, k = rng.uniform(60, 200), rng.uniform(-60, 60), rng.uniform(0.002, 0.01)
        img[..., c] = a + b * np.sin(k * xx + rng.uniform(0, 6)) * np.cos(k * yy)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def paste_face(frame: np.ndarray, face: np.ndarray, x: int, y: int, side: int) -> tuple:
    """Paste ``face`` (gray or BGR) resized to side×side with its top-left at (x, y); in place.

    Returns the pasted box (x, y, side, side).
    """
    crop = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    if crop.ndim == 2:
        crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    frame[y : y + side, x : x + side] = crop
    return (x, y, side, side)


def scene(
    faces: list[np.ndarray],
    *,
    h: int = 480,
    w: int = 640,
    side: int = 160,
    seed: int = 0,
    bg: np.ndarray | None = None,
) -> tuple[np.ndarray, list[tuple]]:
    """A frame with ``faces`` side by side (non-overlapping), returning the frame and boxes."""
    frame = bg.copy() if bg is not None else background(h, w, seed)
    rng = np.random.default_rng(seed)
    n = len(faces)
    if n == 0:
        return frame, []
    slot = w // n
    side = min(side, slot - 8, h - 8)
    boxes = []
    for i, f in enumerate(faces):
        x = i * slot + int(rng.integers(0, max(1, slot - side)))
        y = int(rng.integers(0, max(1, h - side)))
        boxes.append(paste_face(frame, f, x, y, side))
    return frame, boxes


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / float(aw * ah + bw * bh - inter) if inter else 0.0


def matches(detected, truth, min_iou: float = 0.3) -> bool:
    return iou(detected, truth) >= min_iou
