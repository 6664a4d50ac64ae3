"""Facial-expression recognition core: plain Python + PyTorch + OpenCV, no Django.

Public entry points used by the Django apps and Celery workers:

- :data:`ml.classes.EMOTIONS` — canonical class order (FER2013's).
- :class:`ml.predictor.Predictor` — load a checkpoint once, classify face crops / frames.
- :func:`ml.faces.detect_faces` — find faces in a frame and return 48×48 crops.
- :mod:`ml.engagement` — pure engagement signals over windows of observations.
"""

from ml.classes import EMOTIONS

__all__ = ["EMOTIONS"]
