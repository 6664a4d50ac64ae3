"""Face detection: boxes and 48×48 grayscale crops from frames of any size and colour layout.

Detector: OpenCV's Viola-Jones Haar cascade (``haarcascade_frontalface_alt2.xml``), whose
weights ship inside the ``opencv-python-headless<5`` wheel, so nothing is downloaded at run
time. It is fast on a CPU and, being frontal-only, doubles as a coarse "facing the screen"
cue for engagement. Figures that justify the choice are in the README (``python -m
ml.bench_faces``). Each detector instance is kept per thread: ``CascadeClassifier`` is not
documented as thread-safe.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

from ml.preprocessing import resize_crop, to_gray

CASCADE_FILE = "haarcascade_frontalface_alt2.xml"
_local = threading.local()


@dataclass
class DetectorConfig:
    scale_factor: float = 1.1
    min_neighbors: int = 3
    min_face_fraction: float = 0.08  # smallest face side as a fraction of the frame's shorter side
    min_face_px: int = 24
    max_side: int = 320  # frames are downscaled to this for detection, boxes mapped back
    # FER2013 crops are ~1.05× the alt2 box (measured by ml.bench_faces): margin 0.025 a side
    margin: float = 0.025
    crop_size: int = 48
    cascade: str = CASCADE_FILE  # a file name in cv2.data.haarcascades, or a path


@dataclass
class Face:
    box: tuple[int, int, int, int]  # x, y, w, h in the input frame's pixels
    crop: np.ndarray  # crop_size×crop_size uint8 grayscale
    score: int = 0  # merged raw detections (OpenCV's neighbour count): higher = surer
    cues: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"box": list(self.box), "score": self.score, "cues": self.cues}


@dataclass
class FoundFace:
    """A face found before the server saw the picture (on the learner's device): its square
    grayscale crop, framed as :func:`square_crop` frames one. Given to
    ``Predictor.predict_frames`` in place of a picture, it is classified with no detection."""

    crop: np.ndarray


def _cascade(name: str) -> cv2.CascadeClassifier:
    cache = _local.__dict__.setdefault("cascades", {})
    c = cache.get(name)
    if c is None:
        path = name if os.path.sep in name else cv2.data.haarcascades + name
        c = cv2.CascadeClassifier(path)
        if c.empty():
            raise RuntimeError(f"could not load OpenCV cascade {path}")
        cache[name] = c
    return c


def square_crop(gray: np.ndarray, box, margin: float, size: int) -> np.ndarray:
    """Square crop centred on ``box`` grown by ``margin``; out-of-frame parts are edge-padded."""
    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(1, int(round(side)))
    H, W = gray.shape
    pad = max(0, -x0, -y0, x0 + s - W, y0 + s - H)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    return resize_crop(np.ascontiguousarray(gray[y0 : y0 + s, x0 : x0 + s]), size)


def detect_faces(image: np.ndarray, config: DetectorConfig | None = None) -> list[Face]:
    """All frontal faces in ``image`` (gray, BGR or BGRA uint8), most certain first."""
    cfg = config or DetectorConfig()
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise ValueError("image must be a non-empty 2-D (gray) or 3-D (BGR/BGRA) array")
    gray = to_gray(image)
    H, W = gray.shape
    if min(H, W) < cfg.min_face_px:  # no face fits (a strip, a thumbnail): nothing to detect
        return []
    scale = min(1.0, cfg.max_side / max(H, W))
    size = (max(1, round(W * scale)), max(1, round(H * scale)))  # never 0 px on a side
    small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA) if scale < 1 else gray
    small = cv2.equalizeHist(small)
    min_side = max(cfg.min_face_px, int(cfg.min_face_fraction * min(small.shape)))
    if min(small.shape) < min_side:
        return []
    rects, counts = _cascade(cfg.cascade).detectMultiScale2(
        small,
        scaleFactor=cfg.scale_factor,
        minNeighbors=cfg.min_neighbors,
        minSize=(min_side, min_side),
    )
    found = sorted(
        ((tuple(int(v) for v in r), int(n)) for r, n in zip(rects, counts, strict=True)),
        key=lambda rn: (-rn[1], -rn[0][2]),
    )
    faces = []
    for (x, y, w, h), score in found:
        box = tuple(int(round(v / scale)) for v in (x, y, w, h))
        bx, by, bw, bh = box
        cues = {
            "frontal": True,
            "area_fraction": round(bw * bh / (W * H), 4),
            "center_offset": round(
                float(np.hypot((bx + bw / 2) / W - 0.5, (by + bh / 2) / H - 0.5)), 4
            ),
        }
        faces.append(
            Face(
                box=box,
                crop=square_crop(gray, box, cfg.margin, cfg.crop_size),
                score=score,
                cues=cues,
            )
        )
    return faces
