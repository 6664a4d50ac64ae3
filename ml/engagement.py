"""Per-frame attention and windowed engagement scores from face cues and emotion probabilities.

Pure Python + NumPy (no Django, no torch), so it can run in the web process, a worker or a
notebook alike.

Source and adaptation
---------------------
The score follows the *concentration index* (CI) of Sharma et al. 2019, "Student Engagement
Detection Using Emotion Analysis, Eye Tracking and Head Movement with Machine Learning"
(arXiv:1909.12913): ``CI = emotion_weight × gaze_weight``, banded as *highly engaged*
(CI ≥ 0.65), *engaged* / "nominally engaged" (0.25 ≤ CI < 0.65) and *disengaged* (CI < 0.25),
with dominant-emotion weights neutral 0.9, happy 0.6, surprise 0.6, sad 0.3, fear 0.3,
angry 0.25, disgust 0.2.

This module is an **adaptation**, not a reproduction:

* The paper derives the gaze weight from eye tracking and head movement. Here there is no eye
  tracker: the only gaze cue is the webcam's frontal-only Haar face detector (``ml/faces.py``),
  so "a face was detected" already means the learner roughly faces the screen, and the gaze
  weight is graded by how far the face box sits from the frame centre.
* The paper weights the *dominant* (argmax) emotion; here the *expected* weight under the
  classifier's probabilities is used, which is smoother and less brittle on ambiguous faces.
* The CI is divided by the largest emotion weight (0.9) so that a fully attentive, centred,
  neutral learner scores 1.0, and it is averaged over a time window in which frames without a
  face count as 0. The paper's band thresholds are then applied to that normalised score.

Formulas (exactly as implemented)
---------------------------------
Per frame, with ``off`` = ``center_offset``, ``area`` = ``area_fraction``,
``M`` = ``max_center_offset`` (default 0.35) and ``A`` = ``min_area_fraction`` (default 0.01)::

    attentive = face and (off is None or off <= M) and (area is None or area >= A)

    gaze_weight = 0                              if no face, or area is known and area < A
                = 1                              if off is None (cue unknown)
                = max(0, 1 - off / (2 * M))      otherwise

    emotion_weight = Σ_c p_c × W_c               W = EMOTION_WEIGHTS (neutral 0.9 … disgust 0.2)

    frame_score = gaze_weight                                  if probs is None
                = clip(gaze_weight × emotion_weight / 0.9, 0, 1)  otherwise

So the gaze weight is 1 for a centred face, 0.5 at the attention threshold ``M`` and 0 at
``2M``; a face between ``M`` and ``2M`` is *not attentive* (it does not count towards
``attention_ratio``) but still earns partial gaze weight, which avoids a cliff in the score.

Per window ``[start, end)`` with ``n`` frames::

    engagement = (1 / n) Σ_frames frame_score     (absent frames score 0)
    band       = "highly engaged" if engagement >= 0.65
                 else "engaged" if engagement >= 0.25 else "disengaged"

A window without frames (``n == 0``: camera paused, a gap) has ``None`` for its presence,
attention, engagement and band: no data, not disengagement.

Engagement-only mode (emotion inference disabled, every ``probs`` is None) therefore gives the
mean gaze weight over *all* frames, presence included; with probabilities the same mean is
taken over the emotion-weighted frame scores. A frame with a face but no probabilities (mixed
input) contributes its gaze weight alone. The same bands apply in both modes.

Emotion summaries (distribution, dominant emotion, valence) are means over the frames that have
a face *and* probabilities; they are ``None`` when there are none.

Device path: head pose, gaze and eye closure (engagement v2)
-------------------------------------------------------------
Frames whose face was found on the learner's device (``source="device"``) carry the head pose
(``yaw``, ``pitch``, degrees), the eye gaze relative to the head (``gaze_yaw``, ``gaze_pitch``,
degrees, optional) and the eye aspect ratio (``eye_open``, the mean of both eyes' EAR). Head
pose, gaze and eye closure are the cues the engagement literature leans on: EngageNet (Singh et
al. 2023) builds its baselines on OpenFace head-pose and eye-gaze features, the EmotiW
engagement-prediction baseline (Kaur et al. 2018; Dhall et al. 2020) regresses engagement from
them alone, and DAiSEE (Gupta et al. 2016) labels engagement from the same webcam view of a
learner at a screen (docs/engagement.md has the references). Eye closure is scored as
PERCLOS (Wierwille et al. 1994; Dinges & Grace 1998): the share of time the eyes are closed.
Per device frame, with ``C`` = ``attention_cone_degrees`` (default 25, a per-course setting),
``Y = yaw + (gaze_yaw or 0)`` and ``P = pitch + (gaze_pitch or 0)``::

    facing      = |Y| <= C and |P| <= C          (True when the head pose is unknown)
    eyes_closed = eye_open < 0.15                (EYES_CLOSED_EAR; False when unknown)
    attentive   = face and facing

    excess      = max(|Y| - C, |P| - C, 0)       (degrees outside the cone)
    gaze_weight = 0                              if no face
                = max(0, 1 - excess / C)
                  × (0.5 if eyes_closed else 1)  (EYES_CLOSED_WEIGHT)

so the weight is 1 anywhere inside the cone, falls linearly to 0 at twice the cone (no cliff at
its edge, like the ``2M`` rule above), and is halved while the eyes are closed. The frame score,
the window's engagement and the bands are then exactly as above. Server-path frames
(``source="server"``, the default) keep the face-position formula above unchanged.

Per window, besides the ratios above (``attention_ratio`` counts device frames that face the
screen and server frames that are attentive, over all frames)::

    device_ratio       = device frames / n                          (None when n == 0)
    looking_away_ratio = device face frames with a head pose, not facing
                         / device face frames with a head pose
    eyes_closed_ratio  = device face frames with eye_open < 0.15
                         / device face frames with eye_open          (PERCLOS-style)
    head_motion        = sqrt(var(yaw) + var(pitch)) over the device face frames with a head
                         pose (population variance, degrees; None below 2 such frames)

each ``None`` where its denominator is 0 (no device frames: the server path cannot tell).

A learner looking down at their notes for a few seconds is not absent: presence is "a face was
found", and the device's detector finds turned and tilted faces (unlike the server's frontal-only
Haar detector), so those frames count as present and only as not facing (they lower attention
and the gaze weight, gradually). The *absent* alert needs no face for the course's
``alert_absent_seconds`` (:func:`absent_for`), far longer than a glance down.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ml.classes import EMOTIONS, VALENCE

#: Dominant-emotion weights of Sharma et al. 2019, used here as per-class weights.
EMOTION_WEIGHTS: dict[str, float] = {
    "angry": 0.25,
    "disgust": 0.2,
    "fear": 0.3,
    "happy": 0.6,
    "sad": 0.3,
    "surprise": 0.6,
    "neutral": 0.9,
}
#: The largest emotion weight; frame scores are divided by it so a neutral, attentive face is 1.
MAX_EMOTION_WEIGHT: float = max(EMOTION_WEIGHTS.values())

MAX_CENTER_OFFSET: float = 0.35
MIN_AREA_FRACTION: float = 0.01

#: Facing the screen: head pose plus gaze within this many degrees on each axis (per course).
ATTENTION_CONE_DEGREES: float = 25.0
#: Eye aspect ratio below which an eye counts as closed (open eyes read about 0.25–0.35).
EYES_CLOSED_EAR: float = 0.15
#: A device frame's gaze weight is multiplied by this while the eyes are closed.
EYES_CLOSED_WEIGHT: float = 0.5
#: Where a frame's face was found: on the learner's device, or by the server in a picture.
DEVICE, SERVER = "device", "server"
SOURCES: tuple[str, ...] = (DEVICE, SERVER)
#: Window fields of the device path (``WindowSummary.to_dict(include_device=True)``).
DEVICE_KEYS: tuple[str, ...] = (
    "eyes_closed_ratio",
    "looking_away_ratio",
    "head_motion",
    "device_ratio",
)

#: Band thresholds (inclusive lower bounds).
ENGAGED_THRESHOLD: float = 0.25
HIGHLY_ENGAGED_THRESHOLD: float = 0.65
DISENGAGED, ENGAGED, HIGHLY_ENGAGED = "disengaged", "engaged", "highly engaged"
BANDS: tuple[str, ...] = (DISENGAGED, ENGAGED, HIGHLY_ENGAGED)

#: How far the probabilities may sum from 1 (covers softmax outputs rounded to a few decimals).
PROBS_SUM_TOLERANCE: float = 1e-2
EMOTION_KEYS: tuple[str, ...] = (
    "emotion_distribution",
    "dominant_emotion",
    "valence",
    "uncertain_ratio",
)
#: what a window shows as its emotion when most of its classified faces were uncertain
UNCERTAIN = "uncertain"

_EPS = 1e-9


def validate_probs(probs: Mapping[str, float]) -> dict[str, float]:
    """Check a class → probability mapping; return it as a dict over all of ``EMOTIONS``.

    Missing classes count as 0. Raises ``ValueError`` on unknown classes, negative or non-finite
    values, or a sum further than ``PROBS_SUM_TOLERANCE`` from 1.
    """
    unknown = sorted(set(probs) - set(EMOTIONS))
    if unknown:
        raise ValueError(f"unknown emotion class(es) {unknown}; expected a subset of {EMOTIONS}")
    out = {name: float(probs.get(name, 0.0)) for name in EMOTIONS}
    bad = {k: v for k, v in out.items() if not math.isfinite(v) or v < 0}
    if bad:
        raise ValueError(f"probabilities must be finite and non-negative, got {bad}")
    total = sum(out.values())
    if abs(total - 1.0) > PROBS_SUM_TOLERANCE:
        raise ValueError(f"probabilities must sum to 1 (±{PROBS_SUM_TOLERANCE}), got {total:.4f}")
    return out


#: (field, lowest, highest) of the device path's per-frame cues
_DEVICE_RANGES: tuple[tuple[str, float, float], ...] = (
    ("yaw", -90.0, 90.0),
    ("pitch", -90.0, 90.0),
    ("gaze_yaw", -90.0, 90.0),
    ("gaze_pitch", -90.0, 90.0),
    ("eye_open", 0.0, 1.0),
)
_DEVICE_FIELDS = tuple(name for name, _, _ in _DEVICE_RANGES)


@dataclass(frozen=True)
class Observation:
    """One analysed frame: time, whether a face was found, its cues and emotion probabilities.

    ``source`` says where the face was found: ``"server"`` (a picture: face position cues only)
    or ``"device"`` (the learner's browser: head pose, gaze and eye openness as well)."""

    t: float
    face: bool
    center_offset: float | None = None
    area_fraction: float | None = None
    probs: Mapping[str, float] | None = None
    yaw: float | None = None
    pitch: float | None = None
    gaze_yaw: float | None = None
    gaze_pitch: float | None = None
    eye_open: float | None = None
    source: str = SERVER
    #: the model abstained on this face: its probabilities are left out (``probs`` None)
    uncertain: bool = False

    def __post_init__(self) -> None:
        if not math.isfinite(self.t):
            raise ValueError(f"t must be finite, got {self.t}")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        device = {k: getattr(self, k) for k in _DEVICE_FIELDS if getattr(self, k) is not None}
        if not self.face and (
            self.probs is not None
            or self.center_offset is not None
            or self.area_fraction is not None
            or device
        ):
            raise ValueError("an observation without a face cannot carry cues or probs")
        if self.uncertain and (not self.face or self.probs is not None):
            raise ValueError("an uncertain observation has a face and no probs")
        if device and self.source != DEVICE:
            raise ValueError(f"only a device observation carries {sorted(device)}")
        if self.center_offset is not None and not (
            math.isfinite(self.center_offset) and self.center_offset >= 0
        ):
            raise ValueError(f"center_offset must be >= 0, got {self.center_offset}")
        if self.area_fraction is not None and not (0.0 <= self.area_fraction <= 1.0):
            raise ValueError(f"area_fraction must be in [0, 1], got {self.area_fraction}")
        for name, low, high in _DEVICE_RANGES:
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and low <= value <= high):
                raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value}")
        if self.probs is not None:
            object.__setattr__(self, "probs", validate_probs(self.probs))

    @classmethod
    def from_dict(cls, d: Mapping) -> Observation:
        """Build from ``{"t": ..., "face": ..., "cues": {...}, "probs": {...}, "source": ...}``.

        ``cues`` may hold ``center_offset`` and ``area_fraction``, and for a device observation
        (``source`` ``"device"``; default ``"server"``) ``yaw``, ``pitch``, ``gaze_yaw``,
        ``gaze_pitch``, ``eye_open_left`` and ``eye_open_right`` (their mean is ``eye_open``);
        other keys are ignored. ``cues`` and ``probs`` may be missing or None. Without
        ``face``, a face is assumed when cues or probs are given.
        """
        cues = d.get("cues") or {}
        probs = d.get("probs")
        face = bool(d["face"]) if "face" in d else bool(cues or probs)
        source = d.get("source") or SERVER
        off, area = cues.get("center_offset"), cues.get("area_fraction")
        device = device_cues(cues) if source == DEVICE and face else {}
        return cls(
            t=float(d["t"]),
            face=face,
            center_offset=None if off is None else float(off),
            area_fraction=None if area is None else float(area),
            probs=probs,
            source=source,
            **device,
        )


def device_cues(cues: Mapping) -> dict[str, float | None]:
    """A device frame's cues (the wire's keys) as :class:`Observation` fields: head pose, gaze,
    and ``eye_open``, the mean of the eyes' aspect ratios given (None when neither is)."""
    eyes = [
        float(v) for v in (cues.get("eye_open_left"), cues.get("eye_open_right")) if v is not None
    ]
    out = {k: _float(cues.get(k)) for k in ("yaw", "pitch", "gaze_yaw", "gaze_pitch")}
    out["eye_open"] = sum(eyes) / len(eyes) if eyes else None
    return out


def _float(value) -> float | None:
    return None if value is None else float(value)


def _check_cone(attention_cone_degrees: float) -> None:
    if not (math.isfinite(attention_cone_degrees) and attention_cone_degrees > 0):
        raise ValueError(f"attention_cone_degrees must be > 0, got {attention_cone_degrees}")


def _cone_excess(obs: Observation, cone: float) -> float | None:
    """Degrees by which head pose plus gaze falls outside the cone (0 inside; None unknown)."""
    if obs.yaw is None or obs.pitch is None:
        return None
    y = abs(obs.yaw + (obs.gaze_yaw or 0.0))
    p = abs(obs.pitch + (obs.gaze_pitch or 0.0))
    return max(y - cone, p - cone, 0.0)


def facing(obs: Observation, *, attention_cone_degrees: float = ATTENTION_CONE_DEGREES) -> bool:
    """A device face turned to the screen: head pose plus gaze within the cone on both axes
    (True when the head pose is unknown, False without a face)."""
    _check_cone(attention_cone_degrees)
    if not obs.face:
        return False
    excess = _cone_excess(obs, attention_cone_degrees)
    return excess is None or excess == 0.0


def eyes_closed(obs: Observation) -> bool:
    """The eyes read closed: ``eye_open < EYES_CLOSED_EAR`` (False when unknown)."""
    return obs.face and obs.eye_open is not None and obs.eye_open < EYES_CLOSED_EAR


def attentive(
    obs: Observation,
    *,
    max_center_offset: float = MAX_CENTER_OFFSET,
    min_area_fraction: float = MIN_AREA_FRACTION,
    attention_cone_degrees: float = ATTENTION_CONE_DEGREES,
) -> bool:
    """A face is present and oriented to the screen. A device frame: facing within the cone
    (:func:`facing`). A server frame: centred enough and not too far away.

    Unknown cues are not held against the frame: then face presence alone decides.
    """
    if obs.source == DEVICE:
        return facing(obs, attention_cone_degrees=attention_cone_degrees)
    if not obs.face:
        return False
    if obs.center_offset is not None and obs.center_offset > max_center_offset:
        return False
    return not (obs.area_fraction is not None and obs.area_fraction < min_area_fraction)


def gaze_weight(
    obs: Observation,
    *,
    max_center_offset: float = MAX_CENTER_OFFSET,
    min_area_fraction: float = MIN_AREA_FRACTION,
    attention_cone_degrees: float = ATTENTION_CONE_DEGREES,
) -> float:
    """Gaze weight in [0, 1]; 0 without a face.

    A server frame: ``max(0, 1 - offset / (2 × max_center_offset))``; 0 with a face smaller
    than ``min_area_fraction``; 1 when the offset is unknown. A device frame:
    ``max(0, 1 - excess / cone)`` for the degrees outside the cone (1 inside it or when the
    pose is unknown), times ``EYES_CLOSED_WEIGHT`` while the eyes are closed.
    """
    if max_center_offset <= 0:
        raise ValueError(f"max_center_offset must be > 0, got {max_center_offset}")
    _check_cone(attention_cone_degrees)
    if not obs.face:
        return 0.0
    if obs.source == DEVICE:
        excess = _cone_excess(obs, attention_cone_degrees) or 0.0
        weight = max(0.0, 1.0 - excess / attention_cone_degrees)
        return weight * (EYES_CLOSED_WEIGHT if eyes_closed(obs) else 1.0)
    if obs.area_fraction is not None and obs.area_fraction < min_area_fraction:
        return 0.0
    if obs.center_offset is None:
        return 1.0
    return max(0.0, 1.0 - obs.center_offset / (2.0 * max_center_offset))


def emotion_weight(probs: Mapping[str, float]) -> float:
    """Expected emotion weight ``Σ p_c × EMOTION_WEIGHTS[c]`` (in [0.2, 0.9])."""
    p = validate_probs(probs)
    return float(sum(p[c] * EMOTION_WEIGHTS[c] for c in EMOTIONS))


def expected_valence(probs: Mapping[str, float]) -> float:
    """Expected valence ``Σ p_c × VALENCE[c]`` (in [-1, 1])."""
    p = validate_probs(probs)
    return float(sum(p[c] * VALENCE[c] for c in EMOTIONS))


def concentration_index(
    obs: Observation,
    *,
    max_center_offset: float = MAX_CENTER_OFFSET,
    min_area_fraction: float = MIN_AREA_FRACTION,
    attention_cone_degrees: float = ATTENTION_CONE_DEGREES,
) -> float | None:
    """Sharma et al.'s raw ``emotion_weight × gaze_weight`` (max 0.9); None without probs."""
    if obs.probs is None:
        return None
    g = gaze_weight(
        obs,
        max_center_offset=max_center_offset,
        min_area_fraction=min_area_fraction,
        attention_cone_degrees=attention_cone_degrees,
    )
    return g * emotion_weight(obs.probs)


def frame_score(
    obs: Observation,
    *,
    max_center_offset: float = MAX_CENTER_OFFSET,
    min_area_fraction: float = MIN_AREA_FRACTION,
    attention_cone_degrees: float = ATTENTION_CONE_DEGREES,
) -> float:
    """Per-frame engagement in [0, 1]: the gaze weight, times ``emotion_weight / 0.9`` if probs."""
    g = gaze_weight(
        obs,
        max_center_offset=max_center_offset,
        min_area_fraction=min_area_fraction,
        attention_cone_degrees=attention_cone_degrees,
    )
    if obs.probs is None:
        return g
    return min(1.0, max(0.0, g * emotion_weight(obs.probs) / MAX_EMOTION_WEIGHT))


def band(score: float) -> str:
    """``"highly engaged"`` (≥ 0.65), ``"engaged"`` (≥ 0.25) or ``"disengaged"``."""
    if not math.isfinite(score):
        raise ValueError(f"score must be finite, got {score}")
    if score >= HIGHLY_ENGAGED_THRESHOLD:
        return HIGHLY_ENGAGED
    if score >= ENGAGED_THRESHOLD:
        return ENGAGED
    return DISENGAGED


@dataclass
class WindowSummary:
    start: float
    end: float
    n_frames: int
    # None for a window without frames: no data (camera paused, a gap), not a 0 or a band
    presence_ratio: float | None
    attention_ratio: float | None
    engagement: float | None
    band: str | None
    emotion_distribution: dict[str, float] | None = None
    dominant_emotion: str | None = None
    valence: float | None = None
    # share of the classified faces the model abstained on (None: no face was classified)
    uncertain_ratio: float | None = None
    # the device path's cues (module docstring); None where the window has no device frames
    eyes_closed_ratio: float | None = None
    looking_away_ratio: float | None = None
    head_motion: float | None = None
    device_ratio: float | None = None

    def to_dict(self, include_emotion: bool = True, include_device: bool = False) -> dict:
        """The fields; with ``include_emotion=False`` the emotion keys are left out entirely,
        and the device path's (``DEVICE_KEYS``) are in only with ``include_device=True``."""
        d = asdict(self)
        if not include_emotion:
            for key in EMOTION_KEYS:
                del d[key]
        if not include_device:
            for key in DEVICE_KEYS:
                del d[key]
        return d


def _ratio(hits: int, total: int) -> float | None:
    return hits / total if total else None


def device_summary(
    frames: Sequence[Observation], *, attention_cone_degrees: float = ATTENTION_CONE_DEGREES
) -> dict[str, float | None]:
    """The device path's window fields (``DEVICE_KEYS``) over ``frames`` (module docstring)."""
    if not frames:
        return dict.fromkeys(DEVICE_KEYS)
    device = [o for o in frames if o.source == DEVICE]
    faces = [o for o in device if o.face]
    posed = [o for o in faces if o.yaw is not None and o.pitch is not None]
    eyed = [o for o in faces if o.eye_open is not None]
    away = sum(not facing(o, attention_cone_degrees=attention_cone_degrees) for o in posed)
    motion = None
    if len(posed) >= 2:
        spread = np.var([o.yaw for o in posed]) + np.var([o.pitch for o in posed])
        motion = float(math.sqrt(spread))
    return {
        "eyes_closed_ratio": _ratio(sum(eyes_closed(o) for o in eyed), len(eyed)),
        "looking_away_ratio": _ratio(away, len(posed)),
        "head_motion": motion,
        "device_ratio": len(device) / len(frames),
    }


def summarize_window(
    observations: Iterable[Observation],
    start: float,
    end: float,
    *,
    max_center_offset: float = MAX_CENTER_OFFSET,
    min_area_fraction: float = MIN_AREA_FRACTION,
    attention_cone_degrees: float = ATTENTION_CONE_DEGREES,
) -> WindowSummary:
    """Summarise the observations with ``start <= t < end`` (others are ignored)."""
    if not end > start:
        raise ValueError(f"end must be after start, got [{start}, {end})")
    _check_cone(attention_cone_degrees)
    th = {
        "max_center_offset": max_center_offset,
        "min_area_fraction": min_area_fraction,
        "attention_cone_degrees": attention_cone_degrees,
    }
    frames = [o for o in observations if start <= o.t < end]
    n = len(frames)
    if n == 0:
        return WindowSummary(start, end, 0, None, None, None, None)
    presence = sum(o.face for o in frames) / n
    attention = sum(attentive(o, **th) for o in frames) / n
    engagement = float(np.mean([frame_score(o, **th) for o in frames]))

    with_probs = [o.probs for o in frames if o.face and o.probs is not None]
    n_uncertain = sum(o.uncertain for o in frames)
    dist = dominant = valence = None
    if with_probs:
        mean = np.array([[p[c] for c in EMOTIONS] for p in with_probs]).mean(axis=0)
        dist = {c: float(v) for c, v in zip(EMOTIONS, mean, strict=True)}
        dominant = EMOTIONS[int(np.argmax(mean))]  # ties go to the earlier class
        # the mean of per-frame expected valences equals the expected valence of the mean
        valence = float(sum(dist[c] * VALENCE[c] for c in EMOTIONS))
    uncertain_ratio = _ratio(n_uncertain, n_uncertain + len(with_probs))
    if uncertain_ratio is not None and uncertain_ratio > 0.5:
        dominant = UNCERTAIN  # most faces were doubtful: no emotion is claimed for the window
    return WindowSummary(
        start=start,
        end=end,
        n_frames=n,
        presence_ratio=presence,
        attention_ratio=attention,
        engagement=engagement,
        band=band(engagement),
        emotion_distribution=dist,
        dominant_emotion=dominant,
        valence=valence,
        uncertain_ratio=uncertain_ratio,
        **device_summary(frames, attention_cone_degrees=attention_cone_degrees),
    )


def windows(
    observations: Iterable[Observation],
    window_s: float = 10.0,
    start: float | None = None,
    end: float | None = None,
    *,
    max_center_offset: float = MAX_CENTER_OFFSET,
    min_area_fraction: float = MIN_AREA_FRACTION,
    attention_cone_degrees: float = ATTENTION_CONE_DEGREES,
) -> list[WindowSummary]:
    """Consecutive ``window_s``-second summaries ``[start + i·w, start + (i+1)·w)``.

    Input may be unsorted. ``start`` defaults to the first time floored to a multiple of
    ``window_s``; ``end`` defaults to the end of the window holding the last observation. A
    given ``end`` that is not on the grid shortens the last window. Windows without frames are
    returned (``n_frames`` 0; ratios, engagement and band ``None``: no data) so gaps show on a
    timeline; observations outside ``[start, end)`` are ignored. Returns ``[]`` when there is
    nothing to cover.
    """
    if not (math.isfinite(window_s) and window_s > 0):
        raise ValueError(f"window_s must be > 0, got {window_s}")
    obs = sorted(observations, key=lambda o: o.t)
    if start is None:
        if not obs:
            return []
        start = math.floor(obs[0].t / window_s) * window_s
    if end is None:
        if not obs or obs[-1].t < start:
            return []
        n_windows = math.floor((obs[-1].t - start) / window_s) + 1
        end = start + n_windows * window_s
    else:
        n_windows = math.ceil((end - start) / window_s - _EPS)
    if n_windows <= 0:
        return []
    bounds = [start + i * window_s for i in range(n_windows)] + [end]
    buckets: list[list[Observation]] = [[] for _ in range(n_windows)]
    for o in obs:
        if start <= o.t < end:
            i = min(bisect_right(bounds, o.t) - 1, n_windows - 1)
            buckets[i].append(o)
    th = {
        "max_center_offset": max_center_offset,
        "min_area_fraction": min_area_fraction,
        "attention_cone_degrees": attention_cone_degrees,
    }
    return [summarize_window(buckets[i], bounds[i], bounds[i + 1], **th) for i in range(n_windows)]


def absent_for(observations: Iterable[Observation], now: float) -> float:
    """Seconds since the last frame with a face at or before ``now``; ``inf`` if there is none.

    Every observation given counts as data: leave out frames that could not be analysed. The
    live view (``emotion/summary.py``) also treats the time after the newest analysed frame as no
    data while the camera keeps sending."""
    last = max((o.t for o in observations if o.face and o.t <= now), default=None)
    return math.inf if last is None else now - last


def disengaged_for(summaries: Sequence[WindowSummary], now: float) -> float:
    """Seconds the trailing run of contiguous ``"disengaged"`` windows has lasted, up to ``now``.

    Windows starting after ``now`` are ignored; the run stops at the first window in another
    band, at a window without frames (band ``None``: no data) or at a gap between windows. Time
    after the last window's end is not counted (no data: see :func:`absent_for`). Returns 0 when
    the latest window is not disengaged. The run is at most as long as the windows given: the
    live view carries a longer run's start from one summary to the next.
    """
    past = sorted((s for s in summaries if s.start <= now), key=lambda s: s.start)
    if not past or past[-1].band != DISENGAGED:
        return 0.0
    run_start, run_end = past[-1].start, past[-1].end
    for prev in reversed(past[:-1]):
        if prev.band != DISENGAGED or abs(prev.end - run_start) > 1e-6:
            break
        run_start = prev.start
    return max(0.0, min(now, run_end) - run_start)
