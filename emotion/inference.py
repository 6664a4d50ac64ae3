"""The process-wide predictor: loaded once per process (web in embedded mode, or worker)."""

from __future__ import annotations

import threading

from django.conf import settings

from ml.predictor import Predictor

_predictor: Predictor | None = None
_lock = threading.Lock()


def get_predictor() -> Predictor:
    global _predictor
    if _predictor is None:
        with _lock:
            if _predictor is None:
                _predictor = Predictor(
                    settings.ML_WEIGHTS or None,
                    device=settings.ML_DEVICE,
                    precision=settings.ML_PRECISION,
                )
    return _predictor


def reset_predictor() -> None:
    """Forget the loaded model (tests; a worker reloading after a weights change)."""
    global _predictor
    with _lock:
        _predictor = None
