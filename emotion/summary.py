"""The live view's payloads and the maths behind them, apart from the database, the cache and
the channel layer (:mod:`emotion.live` does that I/O and calls this).

Payloads are frozen dataclasses holding datetimes; ``to_dict()`` gives the JSON sent to
browsers (``static/js``) and kept in the cache, with ISO strings, and
:meth:`SessionSummary.from_dict` reads a cached one back: the one place the live view parses
a datetime (:func:`read_time`).

Times inside the windows are seconds relative to ``now`` (see :func:`recent_windows`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from ml.classes import EMOTIONS
from ml.engagement import (
    ATTENTION_CONE_DEGREES,
    DEVICE_KEYS,
    Observation,
    WindowSummary,
    band,
    disengaged_for,
    windows,
)

#: ``LearnerSession.Status.ACTIVE``, spelt here so this module needs no models.
ACTIVE = "active"

#: The newest window ends this far after ``now``, so a frame received at exactly ``now``
#: still counts in the current window.
NOW_INCLUDED_S = 1e-6

#: How far back the instructor's class engagement chart reaches (seconds).
HISTORY_S = 300

#: A recording session's tile reads "paused" after this many capture intervals without a
#: picture, and never sooner than ``PAUSED_AFTER_MIN_S``: a browser skips a picture when the
#: server has no credit for it, so a few missing ones are not a pause.
PAUSED_AFTER_INTERVALS = 5
PAUSED_AFTER_MIN_S = 5.0

#: A disengaged run this close to the whole look-back fills it: it may have begun earlier.
RUN_FILLS_LOOK_BACK_TOLERANCE_S = 1e-3


def read_time(value: str | None) -> datetime | None:
    """An ISO datetime of a payload (None stays None)."""
    return datetime.fromisoformat(value) if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _seconds(since: datetime, now: datetime) -> float:
    return (now - since).total_seconds()


def _round_since(since: datetime | None, now: datetime) -> float | None:
    return round(_seconds(since, now), 1) if since is not None else None


# --- payloads ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """``absent`` or ``disengaged`` for ``seconds`` (rounded to 0.1 s)."""

    kind: str
    seconds: float

    def to_dict(self) -> dict:
        return {"kind": self.kind, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: Mapping) -> Alert:
        return cls(kind=d["kind"], seconds=d["seconds"])


@dataclass(frozen=True)
class CurrentWindow:
    """The session's newest live window (``None``s and 0 frames: no data). The emotion fields
    stay None where emotion inference is off; the device path's (``DEVICE_KEYS``) where no
    frame of the window came from it."""

    n_frames: int = 0
    presence_ratio: float | None = None
    attention_ratio: float | None = None
    engagement: float | None = None
    band: str | None = None
    dominant_emotion: str | None = None
    emotion_distribution: dict[str, float] | None = None
    uncertain_ratio: float | None = None
    eyes_closed_ratio: float | None = None
    looking_away_ratio: float | None = None
    head_motion: float | None = None
    device_ratio: float | None = None

    @property
    def from_device(self) -> bool:
        """Some of the window's frames came from the device path (head pose, eyes)."""
        return bool(self.device_ratio)

    def device_dict(self) -> dict:
        return {k: getattr(self, k) for k in DEVICE_KEYS}

    @classmethod
    def of(cls, w: WindowSummary, *, emotion: bool) -> CurrentWindow:
        return cls(
            n_frames=w.n_frames,
            presence_ratio=w.presence_ratio,
            attention_ratio=w.attention_ratio,
            engagement=w.engagement,
            band=w.band,
            dominant_emotion=w.dominant_emotion if emotion else None,
            emotion_distribution=dict(w.emotion_distribution)
            if emotion and w.emotion_distribution is not None
            else None,
            uncertain_ratio=w.uncertain_ratio if emotion else None,
            # a window without device frames has none of their cues (not a device_ratio of 0):
            # its payload then reads as it did before the device path
            **({k: getattr(w, k) for k in DEVICE_KEYS} if w.device_ratio else {}),
        )


#: A window without frames: what a summary shows once its newest analysed frame has left it.
NO_FRAMES = CurrentWindow()


@dataclass(frozen=True)
class SessionSummary:
    """One open session's live summary, as of ``at``.

    ``absent_for`` and ``seconds_since_frame`` are seconds (0.1 s) from the last face and the
    last frame to ``at``; ``disengaged_since`` is the start of the disengaged run the current
    window ends in, carried from summary to summary past the look-back. The payload has the
    device path's cues (``DEVICE_KEYS``: eyes closed, looking away…) only when the current
    window has frames from it: a server-path window's payload is as before v2."""

    session: int
    learner: int
    learner_name: str
    course: int
    status: str
    at: datetime
    started_at: datetime
    present: bool
    last_frame_at: datetime | None
    last_analysed_at: datetime | None
    seconds_since_frame: float | None
    absent_for: float | None
    disengaged_since: datetime | None
    window_s: float
    window: CurrentWindow
    alerts: tuple[Alert, ...]
    emotion_enabled: bool

    def to_dict(self) -> dict:
        """The payload: sent to the session's and course's groups, and cached."""
        w = self.window
        out = {
            "session": self.session,
            "learner": self.learner,
            "learner_name": self.learner_name,
            "course": self.course,
            "status": self.status,
            "at": self.at.isoformat(),
            "started_at": self.started_at.isoformat(),
            "present": self.present,
            "last_frame_at": _iso(self.last_frame_at),
            "last_analysed_at": _iso(self.last_analysed_at),
            "seconds_since_frame": self.seconds_since_frame,
            "absent_for": self.absent_for,
            "disengaged_since": _iso(self.disengaged_since),
            "window_s": self.window_s,
            "n_frames": w.n_frames,
            "presence_ratio": w.presence_ratio,
            "attention_ratio": w.attention_ratio,
            "engagement": w.engagement,
            "band": w.band,
            "alerts": [a.to_dict() for a in self.alerts],
            "emotion_enabled": self.emotion_enabled,
        }
        if self.emotion_enabled:
            out["dominant_emotion"] = w.dominant_emotion
            dist = w.emotion_distribution
            out["emotion_distribution"] = dict(dist) if dist is not None else None
            out["uncertain_ratio"] = w.uncertain_ratio
        if w.from_device:
            out.update(w.device_dict())
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> SessionSummary:
        """The inverse of :meth:`to_dict`."""
        return cls(
            session=d["session"],
            learner=d["learner"],
            learner_name=d["learner_name"],
            course=d["course"],
            status=d["status"],
            at=read_time(d["at"]),
            started_at=read_time(d["started_at"]),
            present=d["present"],
            last_frame_at=read_time(d["last_frame_at"]),
            last_analysed_at=read_time(d["last_analysed_at"]),
            seconds_since_frame=d["seconds_since_frame"],
            absent_for=d["absent_for"],
            disengaged_since=read_time(d["disengaged_since"]),
            window_s=d["window_s"],
            window=CurrentWindow(
                n_frames=d["n_frames"],
                presence_ratio=d["presence_ratio"],
                attention_ratio=d["attention_ratio"],
                engagement=d["engagement"],
                band=d["band"],
                dominant_emotion=d.get("dominant_emotion"),
                emotion_distribution=d.get("emotion_distribution"),
                uncertain_ratio=d.get("uncertain_ratio"),
                **{k: d.get(k) for k in DEVICE_KEYS},
            ),
            alerts=tuple(Alert.from_dict(a) for a in d["alerts"]),
            emotion_enabled=d["emotion_enabled"],
        )

    @classmethod
    def from_cache(cls, value: Mapping | None) -> SessionSummary | None:
        """A cached payload, or None where there is none (or one cached before summaries had
        an ``at``: recomputed at its session's next batch)."""
        if not value or not value.get("at"):
            return None
        return cls.from_dict(value)

    def alerted(self, kind: str) -> bool:
        return any(a.kind == kind for a in self.alerts)


@dataclass(frozen=True)
class CourseAlert:
    """A session's alert in the course aggregate, with whose it is."""

    kind: str
    seconds: float
    learner: int
    learner_name: str
    session: int

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "seconds": self.seconds,
            "learner": self.learner,
            "learner_name": self.learner_name,
            "session": self.session,
        }


@dataclass(frozen=True)
class CourseSummary:
    """The course aggregate over its active sessions."""

    course: int
    at: datetime
    active_sessions: int
    present: int
    engagement: float | None
    band: str | None
    alerts: tuple[CourseAlert, ...]
    emotion_enabled: bool
    emotion_distribution: dict[str, float] | None = None
    #: mean over learners of the share of their classified faces that were uncertain
    uncertain_ratio: float | None = None

    def to_dict(self) -> dict:
        out = {
            "course": self.course,
            "at": self.at.isoformat(),
            "active_sessions": self.active_sessions,
            "present": self.present,
            "engagement": self.engagement,
            "band": self.band,
            "alerts": [a.to_dict() for a in self.alerts],
            "emotion_enabled": self.emotion_enabled,
        }
        if self.emotion_enabled:
            out["emotion_distribution"] = self.emotion_distribution
            out["uncertain_ratio"] = self.uncertain_ratio
        return out


@dataclass(frozen=True)
class LiveCourse:
    """The course settings an instructor's live view shows; ``paused_after_s`` is how long
    without a picture a recording session's tile reads "paused" (:func:`paused_after`)."""

    id: int
    title: str
    emotion_enabled: bool
    alert_absent_seconds: int
    alert_disengaged_seconds: int
    capture_fps: float
    paused_after_s: float
    window_s: float

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "title": self.title,
            "emotion_enabled": self.emotion_enabled,
            "alert_absent_seconds": self.alert_absent_seconds,
            "alert_disengaged_seconds": self.alert_disengaged_seconds,
            "capture_fps": self.capture_fps,
            "paused_after_s": self.paused_after_s,
            "window_s": self.window_s,
        }


@dataclass(frozen=True)
class LearnerTile:
    """An enrolled learner and their open session's summary (None without one)."""

    learner: int
    learner_name: str
    session: SessionSummary | None

    def to_dict(self) -> dict:
        return {
            "learner": self.learner,
            "learner_name": self.learner_name,
            "session": self.session.to_dict() if self.session else None,
        }


@dataclass(frozen=True)
class HistoryPoint:
    """The class engagement over the live window that ends at ``at``."""

    at: datetime
    engagement: float

    def to_dict(self) -> dict:
        return {"at": self.at.isoformat(), "engagement": self.engagement}


@dataclass(frozen=True)
class Snapshot:
    """What an instructor's live view starts from; ``history`` is the class engagement of the
    last ``HISTORY_S`` (oldest first, windows without frames left out), so the chart does not
    start empty on a reload."""

    course: LiveCourse
    learners: tuple[LearnerTile, ...]
    summary: CourseSummary
    history: tuple[HistoryPoint, ...] = ()

    def to_dict(self) -> dict:
        return {
            "course": self.course.to_dict(),
            "learners": [t.to_dict() for t in self.learners],
            "summary": self.summary.to_dict(),
            "history": [p.to_dict() for p in self.history],
        }


# --- inputs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """A course's alert thresholds, in seconds."""

    absent_s: float
    disengaged_s: float


@dataclass(frozen=True)
class SessionFacts:
    """What the database says of a session at ``now``: who, its status, and when its camera
    last sent a frame, had a frame analysed and showed a face."""

    session: int
    learner: int
    learner_name: str
    course: int
    status: str
    started_at: datetime
    emotion_enabled: bool
    last_frame_at: datetime | None
    last_analysed_at: datetime | None
    last_face_at: datetime | None


# --- maths ------------------------------------------------------------------------------


def look_back_windows(window_s: float, thresholds: Thresholds) -> int:
    """How many whole windows, the newest ending at ``now``, cover the longer alert threshold
    and one window more."""
    horizon = max(thresholds.disengaged_s, thresholds.absent_s) + window_s
    return max(1, math.ceil(horizon / window_s - 1e-9))


def recent_windows(
    obs: Sequence[Observation],
    window_s: float,
    n: int,
    *,
    attention_cone_degrees: float = ATTENTION_CONE_DEGREES,
) -> list[WindowSummary]:
    """The ``n`` whole windows before ``now`` (observations timed relative to it), the newest
    ending at ``now``: the tile's current window, whatever the course's alert thresholds.
    ``attention_cone_degrees`` is the course's (device frames facing the screen)."""
    return windows(
        obs,
        window_s=window_s,
        start=NOW_INCLUDED_S - n * window_s,
        end=NOW_INCLUDED_S,
        attention_cone_degrees=attention_cone_degrees,
    )


def disengaged_seconds(recent: Sequence[WindowSummary]) -> float:
    """How long the disengaged run the recent windows end in has lasted (0 if none)."""
    return disengaged_for(recent, NOW_INCLUDED_S)


def fills_look_back(disengaged_s: float, look_back_s: float) -> bool:
    """The run lasts as long as the windows looked at: it may have begun before them."""
    return disengaged_s >= look_back_s - RUN_FILLS_LOOK_BACK_TOLERANCE_S


def carried_run_start(
    previous: SessionSummary | None, run_since: datetime, now: datetime
) -> tuple[bool, datetime | None]:
    """What this session's previous summary says of a run that fills the look-back:
    ``(True, since)`` if that summary was made during this run (its ``disengaged_since``, or
    None if it saw none), ``(False, None)`` if it cannot tell."""
    if previous is None or not run_since <= previous.at <= now:
        return False, None
    return True, previous.disengaged_since


def disengaged_since(
    recent: Sequence[WindowSummary],
    now: datetime,
    look_back_s: float,
    previous: SessionSummary | None,
) -> tuple[datetime | None, bool]:
    """``(start of the disengaged run the recent windows end in or None, settled)``. A run
    that fills the look-back starts where the previous summary saw it start; not settled
    when that summary cannot tell (then read further back: :func:`emotion.live`)."""
    run_s = disengaged_seconds(recent)
    if run_s <= 0:
        return None, True
    since = now - timedelta(seconds=run_s)
    if not fills_look_back(run_s, look_back_s):
        return since, True
    known, carried = carried_run_start(previous, since, now)
    if not known:
        return since, False
    return (min(since, carried) if carried is not None else since), True


def presence(
    *,
    active: bool,
    now: datetime,
    last_face: datetime | None,
    last_frame: datetime | None,
    last_analysed: datetime | None,
    started_at: datetime,
    threshold: float,
) -> tuple[bool, Alert | None]:
    """``(present, absent alert or None)``.

    Absence runs from the last face (or the session's start). While the camera is sending
    (a frame within ``threshold``) but its newest frames are not analysed yet or could not be
    (pending, ``inference_failed``, expired), the time after the newest analysed frame is no
    data: only absence seen in analysed frames counts. A camera that sends nothing (paused,
    unplugged) is absent from the last face on, as the page shows it.
    """
    sending = last_frame is not None and _seconds(last_frame, now) <= threshold
    if sending and (last_analysed is None or last_analysed < last_frame):
        known_until = last_analysed or started_at
    else:
        known_until = now
    ref = last_face or started_at
    measured = _seconds(ref, known_until)
    present = bool(active and last_face is not None and measured <= threshold)
    alert = None
    if active and measured > threshold:
        alert = Alert("absent", round(_seconds(ref, now), 1))
    return present, alert


def summarise(
    facts: SessionFacts,
    current: CurrentWindow,
    *,
    now: datetime,
    window_s: float,
    thresholds: Thresholds,
    disengaged_since: datetime | None,
) -> SessionSummary:
    """The summary of a session at ``now`` from its facts, its current window and the start
    of its disengaged run."""
    active = facts.status == ACTIVE
    present, absent = presence(
        active=active,
        now=now,
        last_face=facts.last_face_at,
        last_frame=facts.last_frame_at,
        last_analysed=facts.last_analysed_at,
        started_at=facts.started_at,
        threshold=thresholds.absent_s,
    )
    alerts = [absent] if absent else []
    disengaged_for_s = _seconds(disengaged_since, now) if disengaged_since else 0.0
    if active and disengaged_for_s >= thresholds.disengaged_s:
        alerts.append(Alert("disengaged", round(disengaged_for_s, 1)))
    return SessionSummary(
        session=facts.session,
        learner=facts.learner,
        learner_name=facts.learner_name,
        course=facts.course,
        status=facts.status,
        at=now,
        started_at=facts.started_at,
        present=present,
        last_frame_at=facts.last_frame_at,
        last_analysed_at=facts.last_analysed_at,
        seconds_since_frame=_round_since(facts.last_frame_at, now),
        absent_for=_round_since(facts.last_face_at, now),
        disengaged_since=disengaged_since,
        window_s=window_s,
        window=current,
        alerts=tuple(alerts),
        emotion_enabled=facts.emotion_enabled,
    )


def aged(summary: SessionSummary, now: datetime, *, absent_threshold_s: float) -> SessionSummary:
    """A summary of a session no batch touched, seen at ``now`` as a fresh one would see it:
    once its newest analysed frame has left the live window, a window without frames (no
    engagement, band or emotion, no disengaged alert); presence and the absent alert worked
    out again for ``now``."""
    age = max(0.0, _seconds(summary.at, now))
    last_analysed = summary.last_analysed_at
    window, since = summary.window, summary.disengaged_since
    if last_analysed is None or _seconds(last_analysed, now) > summary.window_s - NOW_INCLUDED_S:
        window, since = NO_FRAMES, None
    last_face = None
    if summary.absent_for is not None:
        last_face = summary.at - timedelta(seconds=summary.absent_for)
    present, absent = presence(
        active=summary.status == ACTIVE,
        now=now,
        last_face=last_face,
        last_frame=summary.last_frame_at,
        last_analysed=last_analysed,
        started_at=summary.started_at,
        threshold=absent_threshold_s,
    )
    alerts = [absent] if absent else []
    if since and summary.alerted("disengaged"):
        alerts.append(Alert("disengaged", round(_seconds(since, now), 1)))
    return replace(
        summary,
        at=now,
        seconds_since_frame=_aged_seconds(summary.seconds_since_frame, age),
        absent_for=_aged_seconds(summary.absent_for, age),
        window=window,
        disengaged_since=since,
        present=present,
        alerts=tuple(alerts),
    )


def _aged_seconds(seconds: float | None, age: float) -> float | None:
    return round(seconds + age, 1) if seconds is not None else None


def paused_after(capture_fps: float) -> float:
    """Seconds without a picture after which a session that has sent pictures reads "paused"
    (paused, camera off or connection lost: the recorder does not tell the server which)."""
    return max(PAUSED_AFTER_MIN_S, round(PAUSED_AFTER_INTERVALS / capture_fps, 1))


def class_history(
    by_session: Mapping[int, Sequence[Observation]],
    *,
    now: datetime,
    window_s: float,
    n: int,
    attention_cone_degrees: float = ATTENTION_CONE_DEGREES,
) -> tuple[HistoryPoint, ...]:
    """The class engagement in the ``n`` whole windows before ``now`` (observations timed
    relative to it), each the mean of the per-learner means of the sessions with frames in it,
    as :func:`course_summary` takes it live; windows where nobody sent a frame are left out."""
    cone = attention_cone_degrees
    per_session = [
        recent_windows(obs, window_s, n, attention_cone_degrees=cone) for obs in by_session.values()
    ]
    out = []
    for i in range(n):
        engaged = [ws[i].engagement for ws in per_session if ws[i].n_frames]
        if engaged:
            end = now - timedelta(seconds=(n - 1 - i) * window_s)
            out.append(HistoryPoint(at=end, engagement=round(sum(engaged) / len(engaged), 4)))
    return tuple(out)


def course_summary(
    *, course: int, emotion_enabled: bool, sessions: Iterable[SessionSummary], now: datetime
) -> CourseSummary:
    """The aggregate of a course's active sessions: each learner with frames in the window
    counts once (a mean of per-learner means), however many frames their camera sent."""
    active = [s for s in sessions if s.status == ACTIVE]
    engaged = [s.window.engagement for s in active if s.window.n_frames]
    engagement = round(sum(engaged) / len(engaged), 4) if engaged else None
    dists = [s.window.emotion_distribution for s in active if s.window.emotion_distribution]
    mix = None
    if emotion_enabled and dists:
        mix = {e: round(sum(d[e] for d in dists) / len(dists), 4) for e in EMOTIONS}
    doubts = [s.window.uncertain_ratio for s in active if s.window.uncertain_ratio is not None]
    uncertain = round(sum(doubts) / len(doubts), 4) if emotion_enabled and doubts else None
    return CourseSummary(
        course=course,
        at=now,
        active_sessions=len(active),
        present=sum(s.present for s in active),
        engagement=engagement,
        band=band(engagement) if engagement is not None else None,
        alerts=tuple(
            CourseAlert(a.kind, a.seconds, s.learner, s.learner_name, s.session)
            for s in active
            for a in s.alerts
        ),
        emotion_enabled=emotion_enabled,
        emotion_distribution=mix,
        uncertain_ratio=uncertain,
    )
