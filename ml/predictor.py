"""Batched emotion prediction from a checkpoint, for the CLI and the inference workers."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ml.checkpoint import build_model, file_sha256, load_checkpoint, preprocessing_of
from ml.classes import EMOTIONS
from ml.evaluate import predict_probs
from ml.faces import DetectorConfig, Face, FoundFace, detect_faces
from ml.preprocessing import resize_crop, to_gray
from ml.runtime import PRECISIONS, runtime_for_checkpoint
from ml.selective import default_threshold

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "fer-compact.pt"


def default_weights() -> Path:
    return Path(os.environ.get("ML_WEIGHTS") or DEFAULT_WEIGHTS)


def default_precision() -> str:
    value = os.environ.get("ML_PRECISION") or "auto"
    if value not in PRECISIONS:
        raise ValueError(f"ML_PRECISION must be one of {PRECISIONS}, not {value!r}")
    return value


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else the CPU; a named device must exist here
    (``ValueError`` with the reason, which the CLIs print as one line)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device: use auto, cpu or cuda") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"--device {name}: MPS is not available on this machine")
    elif device.type != "cpu":
        raise ValueError(f"--device {name!r}: the models run on auto, cpu or cuda")
    return device


@dataclass
class FacePrediction:
    box: tuple[int, int, int, int]
    probs: dict[str, float]
    label: str | None
    confidence: float | None
    cues: dict = field(default_factory=dict)
    crop: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {
            "box": list(self.box),
            "label": self.label,
            "confidence": self.confidence,
            "probs": self.probs,
            "cues": self.cues,
        }


class Predictor:
    """Loads a checkpoint once; safe to call from several threads (inference is stateless)."""

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        *,
        device: str = "auto",
        tta: bool = False,
        detector: DetectorConfig | None = None,
        batch_size: int = 256,
        precision: str | None = None,
    ):
        self.path = Path(weights) if weights else default_weights()
        self.device = resolve_device(device)
        self.checkpoint = load_checkpoint(self.path)
        #: the trained network as saved; ``runtime`` is what runs (on CPU the int8 network or a
        #: fused, channels-last copy)
        self.model = build_model(self.checkpoint).to(self.device).eval()
        #: "fp32" or "int8": what ``runtime`` computes in (``precision`` / ML_PRECISION: auto)
        self.runtime, self.precision = runtime_for_checkpoint(
            self.model, self.checkpoint, self.device, precision or default_precision()
        )
        self.pre = preprocessing_of(self.checkpoint)
        self.temperature = float(self.checkpoint.get("calibration", {}).get("temperature", 1.0))
        self.tta = tta
        self.detector = detector or DetectorConfig(crop_size=self.pre.input_size)
        self.batch_size = batch_size
        self.sha256 = file_sha256(self.path)
        self._lock = threading.Lock()

    def describe(self) -> dict:
        val = (self.checkpoint.get("metrics") or {}).get("val") or {}
        if self.precision == "int8":  # the int8 network's own figures, where quantize measured them
            val = (self.checkpoint["int8"].get("metrics") or {}).get("int8") or val
        return {
            "name": self.checkpoint.get("name") or self.checkpoint["model_config"]["name"],
            "version": self.sha256[:12],
            "path": str(self.path),
            "device": str(self.device),
            "precision": self.precision,
            "temperature": self.temperature,
            "val_accuracy": val.get("accuracy"),
            # below this top probability a face is "uncertain" (ml.selective's rule)
            "uncertainty_threshold": default_threshold(self.checkpoint, self.precision),
        }

    def predict_faces(self, crops) -> np.ndarray:
        """Probabilities (N×7, class order :data:`EMOTIONS`) for grayscale face crops."""
        if len(crops) == 0:
            return np.zeros((0, len(EMOTIONS)), dtype=np.float32)
        with torch.inference_mode():
            return predict_probs(
                self.runtime,
                crops,
                pre=self.pre,
                tta=self.tta,
                batch_size=self.batch_size,
                device=self.device,
                temperature=self.temperature,
            )

    def predict_frame(self, image: np.ndarray) -> list[FacePrediction]:
        return self.predict_frames([image])[0]

    def predict_frames(
        self,
        images: list[np.ndarray | FoundFace],
        classify: list[bool] | None = None,
        timings: dict | None = None,
    ) -> list[list[FacePrediction]]:
        """Detect faces in every frame, then classify all crops in one batch.

        A :class:`~ml.faces.FoundFace` in ``images`` (a crop the learner's device cut) is not
        searched: it is the one face of its frame (box: the whole crop), classified in the
        same batch and through the same preprocessing as the crops cut here.

        ``classify[i] = False`` skips the classifier for frame ``i`` (engagement-only use):
        its faces come back with ``probs`` empty and ``label``/``confidence`` None, and no
        emotion is ever computed for them.
        """
        if classify is None:
            classify = [True] * len(images)
        t0 = time.perf_counter()
        detected = [self._faces(img) for img in images]
        crops = [f.crop for faces, c in zip(detected, classify, strict=True) if c for f in faces]
        t1 = time.perf_counter()
        probs = self.predict_faces(crops)
        if timings is not None:
            timings["detect_s"] = t1 - t0
            timings["classify_s"] = time.perf_counter() - t1
        out, k = [], 0
        for faces, c in zip(detected, classify, strict=True):
            preds = []
            for f in faces:
                if not c:
                    preds.append(
                        FacePrediction(
                            box=f.box,
                            probs={},
                            label=None,
                            confidence=None,
                            cues=f.cues,
                            crop=f.crop,
                        )
                    )
                    continue
                p = probs[k]
                k += 1
                i = int(p.argmax())
                preds.append(
                    FacePrediction(
                        box=f.box,
                        probs={c: round(float(v), 5) for c, v in zip(EMOTIONS, p, strict=True)},
                        label=EMOTIONS[i],
                        confidence=round(float(p[i]), 5),
                        cues=f.cues,
                        crop=f.crop,
                    )
                )
            out.append(preds)
        return out

    def _faces(self, image: np.ndarray | FoundFace) -> list[Face]:
        if isinstance(image, FoundFace):
            crop = resize_crop(to_gray(image.crop), self.detector.crop_size)
            side = crop.shape[0]
            return [Face(box=(0, 0, side, side), crop=crop)]
        return detect_faces(image, self.detector)


class TemporalSmoother:
    """Exponential moving average of one person's probabilities over a stream of frames.

    ``half_life`` seconds sets how fast old frames fade; a gap longer than ``reset_after``
    seconds (the learner left, the stream paused) starts afresh.
    """

    def __init__(self, half_life: float = 2.0, reset_after: float = 10.0):
        self.half_life = half_life
        self.reset_after = reset_after
        self.state: np.ndarray | None = None
        self.t: float | None = None

    def update(self, probs, t: float | None = None) -> np.ndarray:
        t = time.monotonic() if t is None else t
        p = np.asarray(probs, dtype=np.float64)
        if self.state is None or self.t is None or t - self.t > self.reset_after or t < self.t:
            self.state = p.copy()
        else:
            alpha = 1 - 0.5 ** ((t - self.t) / self.half_life)
            self.state = (1 - alpha) * self.state + alpha * p
        self.t = t
        return self.state / self.state.sum()
