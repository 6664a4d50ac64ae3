"""The real Celery app (``config``) for a worker whose model kills its process on a poison
frame, as a segfault in native code or the kernel's OOM killer would: any batch holding an
all-black frame ends the process with ``os._exit`` (no exception, no cleanup, no ack).

Start it with ``celery -A tests.emotion.killing_worker worker`` (``worker_factory(app=...)``).
"""

import os

import numpy as np

import emotion.inference
from config.celery import app

__all__ = ["app"]

_real_get_predictor = emotion.inference.get_predictor


class _KillingPredictor:
    def __init__(self, real):
        self._real, self.sha256 = real, real.sha256

    def describe(self):
        return self._real.describe()

    def predict_frames(self, images, classify, timings=None):
        if any(not np.any(img) for img in images):
            os._exit(9)
        return self._real.predict_frames(images, classify, timings)


emotion.inference.get_predictor = lambda: _KillingPredictor(_real_get_predictor())
