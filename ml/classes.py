"""The one place that defines the emotion classes and their order."""

from __future__ import annotations

#: FER2013's canonical label order: angry=0, disgust=1, fear=2, happy=3, sad=4, surprise=5, neutral=6.
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(EMOTIONS)
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(EMOTIONS)}

#: Valence per emotion in [-1, 1] (Russell's circumplex placement, coarse), used for affect summaries.
VALENCE: dict[str, float] = {
    "angry": -0.8,
    "disgust": -0.7,
    "fear": -0.6,
    "happy": 0.9,
    "sad": -0.7,
    "surprise": 0.3,
    "neutral": 0.0,
}
