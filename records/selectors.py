"""Reads of what is kept about learners: timelines and reports (from readings), the learner's
export, and what an erasure would erase.

Visibility stays with ``tutoring.selectors``: callers pass a session or course they already
got through it (``session_get``, ``course_get``).
"""

from __future__ import annotations

import base64
import math
from collections import Counter
from collections.abc import Iterator

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce

from emotion.models import Reading
from emotion.observations import OBSERVATION_FIELDS, observations
from ml.engagement import DEVICE_KEYS, EMOTION_KEYS, Observation, summarize_window, windows
from tutoring.models import Consent, Course, LearnerSession, User
from tutoring.selectors import session_emotion_visible

READING_FIELDS = ("session_id", "sequence", "captured_at", *OBSERVATION_FIELDS)


def _session_readings(session: LearnerSession, date_from=None, date_to=None):
    qs = session.readings.analysed()
    if date_from:
        qs = qs.filter(captured_at__gte=date_from)
    if date_to:
        qs = qs.filter(captured_at__lt=date_to)
    return list(qs.order_by("captured_at").values(*READING_FIELDS))


def _session_observations(session: LearnerSession, emotion: bool) -> list[Observation]:
    """The session's analysed readings, timed from its start by capture time."""
    return observations(
        _session_readings(session),
        time_field="captured_at",
        origin=session.started_at,
        emotion=emotion,
    )


#: the most windows a timeline has: a longer span gets wider windows (see ``session_timeline``)
MAX_TIMELINE_WINDOWS = 2000


def session_timeline(*, session: LearnerSession, window_s: float = 10.0) -> list[dict]:
    """The session's windows; see :func:`session_timeline_data`."""
    return session_timeline_data(session=session, window_s=window_s)["windows"]


def session_timeline_data(*, session: LearnerSession, window_s: float = 10.0) -> dict:
    """The session in windows on a grid anchored at ``started_at``: ``{"window_s", "windows",
    "gaps"}`` (:func:`timeline_gaps`).

    The windows run from the session's start to its end (``ended_at``; while open, the window
    holding the last frame). Frames carry the client's ``captured_at``, which may be up to the
    allowed clock skew before ``started_at`` or after ``ended_at``: the timeline then starts
    (ends) with the whole grid windows holding them — offsets ``-10…0`` s and so on, never a
    shifted grid — so every frame the report counts is in exactly one window.

    A span of more than ``MAX_TIMELINE_WINDOWS`` windows gets windows a whole multiple of
    ``window_s`` wide, the smallest that fits (a 12-hour session asked for at 10 s comes in
    30 s windows), rather than an error: each wide window is exactly some of the narrow ones,
    and the ``window_s`` returned is the one used.
    """
    emotion = session_emotion_visible(session)
    obs = _session_observations(session, emotion)
    timeline = _timeline(session, obs, emotion, window_s)
    return {**timeline, "gaps": timeline_gaps(timeline["windows"])}


#: why a stretch of the timeline has nothing to show, as its gaps name it
GAP_NO_FRAMES = "no_frames"  # no picture arrived: paused, camera off, tab closed, offline
GAP_NO_FACE = "no_face"  # pictures arrived, none with a face in it


def timeline_gaps(windows: list[dict]) -> list[dict]:
    """The stretches of a timeline with nothing to show, so that a page can say why a line
    breaks: ``{"kind", "start", "end"}`` (seconds from the session's start) per run of
    consecutive windows without frames (``no_frames``) or with frames but no face
    (``no_face``). The server cannot tell a pause from a lost connection: both send nothing."""
    gaps: list[dict] = []
    for w in windows:
        if not w["n_frames"]:
            kind = GAP_NO_FRAMES
        elif not w["presence_ratio"]:
            kind = GAP_NO_FACE
        else:
            continue
        last = gaps[-1] if gaps else None
        if last and last["kind"] == kind and last["end"] == w["start"]:
            last["end"] = w["end"]
        else:
            gaps.append({"kind": kind, "start": w["start"], "end": w["end"]})
    return gaps


def _timeline(session, obs: list[Observation], emotion: bool, window_s: float) -> dict:
    ended = None
    if session.ended_at:
        ended = max((session.ended_at - session.started_at).total_seconds(), 0.0)
    if not obs and ended is None:
        return {"window_s": window_s, "windows": []}

    def grid(w: float) -> tuple[float, float, int]:
        """First window's start, last window's end, and how many windows of ``w`` seconds."""
        start = math.floor(min(obs[0].t, 0.0) / w) * w if obs else 0.0  # < 0: clock behind
        end = ended  # the last window may be shorter
        if obs and (ended is None or obs[-1].t >= ended):  # open, or a client clock ahead
            end = (math.floor(obs[-1].t / w) + 1) * w  # the window holding the last frame
        return start, end, math.ceil((end - start) / w - 1e-9)

    base, k = window_s, 1
    start, end, n = grid(base)
    if n > MAX_TIMELINE_WINDOWS:
        k = math.ceil(n / MAX_TIMELINE_WINDOWS)
        while grid(base * k)[2] > MAX_TIMELINE_WINDOWS:
            k += 1
        start, end, n = grid(base * k)
    window_s = base * k
    result = []
    cone = session.course.attention_cone_degrees
    for w in windows(obs, window_s=window_s, start=start, end=end, attention_cone_degrees=cone):
        d = w.to_dict(include_emotion=emotion, include_device=True)
        d["start_at"] = session.started_at.timestamp() + w.start
        result.append(d)
    return {"window_s": window_s, "windows": result}


def _summary(obs: list[Observation], emotion: bool, course: Course) -> dict:
    """The aggregates of ``obs`` as one window, the device path's cues (``DEVICE_KEYS``)
    included (None where no frame came from it), with the course's attention cone."""
    if not obs:
        base = {
            "n_frames": 0,
            "presence_ratio": None,
            "attention_ratio": None,
            "engagement": None,
            "band": None,
        }
        if emotion:
            base.update(dict.fromkeys(EMOTION_KEYS))
        return {**base, **dict.fromkeys(DEVICE_KEYS)}
    w = summarize_window(
        obs,
        start=min(o.t for o in obs),
        end=max(o.t for o in obs) + 1e-6,
        attention_cone_degrees=course.attention_cone_degrees,
    )
    d = w.to_dict(include_emotion=emotion, include_device=True)
    for k in ("start", "end"):
        d.pop(k, None)
    return d


def session_report(*, session: LearnerSession, window_s: float = 10.0) -> dict:
    """The whole session's aggregates; ``band_share`` is the share of the timeline's windows
    with frames in each band (``window_s`` windows, wider for a very long session). One query."""
    emotion = session_emotion_visible(session)
    obs = _session_observations(session, emotion)
    timeline = _timeline(session, obs, emotion, window_s)["windows"]
    bands = Counter(w["band"] for w in timeline if w["n_frames"])
    n_windows = sum(bands.values())
    end = session.ended_at or (session.last_frame_at or session.started_at)
    report = {
        "session": session.pk,
        "learner": session.learner.username,
        "learner_name": session.learner.display_name,
        "course": session.course_id,
        "status": session.status,
        "started_at": session.started_at,
        "ended_at": session.ended_at,
        "duration_s": round(max((end - session.started_at).total_seconds(), 0.0), 1),
        "emotion_enabled": emotion,
        **_summary(obs, emotion, session.course),
        "band_share": {b: round(n / n_windows, 4) for b, n in sorted(bands.items())},
    }
    return report


def _report_sessions(course: Course, date_from=None, date_to=None) -> QuerySet[LearnerSession]:
    """The course's sessions that overlap ``[date_from, date_to)``.

    A session spans ``started_at`` to its end (``ended_at``, else the last frame, else its
    start). It overlaps when it starts before ``date_to`` and ends after ``date_from`` (or
    starts at or after it). A session with an analysed reading captured inside the range is
    included too (a frame the server could not analyse does not count): clients stamp ``captured_at`` themselves, within the allowed clock skew of
    the server's times.
    """
    sessions = course.sessions.select_related("learner").annotate(
        report_end=Coalesce("ended_at", "last_frame_at", "started_at")
    )
    if not (date_from or date_to):
        return sessions
    overlaps = Q()
    if date_from:
        overlaps &= Q(started_at__gte=date_from) | Q(report_end__gt=date_from)
    if date_to:
        overlaps &= Q(started_at__lt=date_to)
    inside = _in_range(
        Reading.objects.analysed().filter(session=OuterRef("pk")),
        date_from,
        date_to,
    )
    return sessions.filter(overlaps | Exists(inside))


def _in_range(readings, date_from=None, date_to=None):
    if date_from:
        readings = readings.filter(captured_at__gte=date_from)
    if date_to:
        readings = readings.filter(captured_at__lt=date_to)
    return readings


def _clipped_duration_s(session: LearnerSession, date_from=None, date_to=None) -> float:
    start, end = session.started_at, session.report_end
    if date_from and date_from > start:
        start = date_from
    if date_to and date_to < end:
        end = date_to
    return max((end - start).total_seconds(), 0.0)


def course_report(*, course: Course, date_from=None, date_to=None) -> dict:
    """Per-learner and overall aggregates of a course over ``[date_from, date_to)``.

    Counts the sessions that overlap the range, their time inside it, and only the readings
    captured inside it (a session across midnight contributes its frames before midnight to
    one day and those after to the next). Two queries, however many sessions.
    """
    emotion = course.emotion_inference_enabled
    sessions = list(
        _report_sessions(course, date_from, date_to).order_by("learner__username", "started_at")
    )
    by_session: dict[int, list[dict]] = {s.pk: [] for s in sessions}
    if sessions:
        readings = _in_range(
            Reading.objects.analysed().filter(session_id__in=list(by_session)),
            date_from,
            date_to,
        )
        for r in readings.order_by("session_id", "captured_at").values(*READING_FIELDS):
            by_session[r["session_id"]].append(r)
    per_learner: dict[int, dict] = {}
    all_obs: list[Observation] = []
    for s in sessions:
        row = per_learner.setdefault(
            s.learner_id,
            {
                "learner": s.learner.username,
                "learner_name": s.learner.display_name,
                "learner_id": s.learner_id,
                "sessions": 0,
                "duration_s": 0.0,
                "_obs": [],
            },
        )
        row["sessions"] += 1
        row["duration_s"] += _clipped_duration_s(s, date_from, date_to)
        obs = observations(
            by_session[s.pk],
            time_field="captured_at",
            origin=s.started_at,
            emotion=emotion and s.emotion_enabled,
        )
        row["_obs"] += obs
        all_obs += obs
    learners = []
    for row in per_learner.values():
        obs = row.pop("_obs")
        row["duration_s"] = round(row["duration_s"], 1)
        learners.append({**row, **_summary(obs, emotion, course)})
    return {
        "course": course.pk,
        "title": course.title,
        "from": date_from,
        "to": date_to,
        "emotion_enabled": emotion,
        "sessions": sum(r["sessions"] for r in learners),
        "learners": learners,
        "overall": _summary(all_obs, emotion, course),
    }


#: sessions per page of an instructor's session history
HISTORY_PAGE_SIZE = 20


def course_sessions(*, course: Course, learner_id: int | None = None) -> QuerySet[LearnerSession]:
    """The course's sessions, newest first (all learners', or one learner's): the instructor's
    session history. Summarise a page of them with :func:`session_rows`."""
    sessions = course.sessions.select_related("learner", "course").order_by("-started_at", "-id")
    if learner_id is not None:
        sessions = sessions.filter(learner_id=learner_id)
    return sessions


def course_session_learners(*, course: Course) -> QuerySet[User]:
    """The learners with a session in the course (also those since unenrolled), by name."""
    return (
        User.objects.filter(learner_sessions__course=course)
        .distinct()
        .order_by("first_name", "last_name", "username")
    )


def session_rows(*, sessions: list[LearnerSession]) -> list[dict]:
    """A history row per session: the session, its duration, frames, presence, attention and
    engagement (``None`` without frames), as :func:`session_report` has them. One query for
    the readings of all of them."""
    by_session: dict[int, list[dict]] = {s.pk: [] for s in sessions}
    if sessions:
        readings = Reading.objects.analysed().filter(session_id__in=list(by_session))
        for r in readings.order_by("session_id", "captured_at").values(*READING_FIELDS):
            by_session[r["session_id"]].append(r)
    rows = []
    for s in sessions:
        # the expression counts in engagement where it was recorded: as the session report
        emotion = session_emotion_visible(s)
        obs = observations(
            by_session[s.pk], time_field="captured_at", origin=s.started_at, emotion=emotion
        )
        end = s.ended_at or s.last_frame_at or s.started_at
        rows.append(
            {
                "session": s,
                "duration_s": max((end - s.started_at).total_seconds(), 0.0),
                **_summary(obs, emotion=False, course=s.course),
            }
        )
    return rows


#: a reading as the learner's export shows it: everything stored except ``reviewed_by`` (the
#: reviewer's identity is not the learner's data) and ``requeued_at`` (queue bookkeeping)
EXPORT_READING_FIELDS = (
    "session_id",
    "sequence",
    "captured_at",
    "received_at",
    "analysed_at",
    "error",
    "face_found",
    "face_source",
    "box",
    "cues",
    "attentive",
    "label",
    "confidence",
    "probs",
    "uncertain",
    "review_reason",
    "reviewed_label",
    "reviewed_at",
    "face_crop",
)


#: readings fetched per round trip by the export (plain rows, face crops included)
EXPORT_CHUNK_SIZE = 1000


def learner_export(*, learner: User) -> dict:
    """Everything stored about a learner, for a data-access request (GDPR Art. 15/20).

    Readings carry what inference wrote, whether it failed (``error``), and a reviewer's label
    of the face (``reviewed_label``, ``reviewed_at``; not who reviewed it). A face crop kept
    for review (courses with ``keep_face_crops``) is the learner's own image: it is included as
    ``face_crop_png_base64`` (a 48×48 grayscale PNG, base64), ``null`` where none was kept.

    ``user``, ``enrollments``, ``consents`` and ``sessions`` are read here; ``readings`` (last)
    is a one-pass iterator, not a list: a learner's history can be hundreds of thousands of
    readings, so they are read as plain rows, ``EXPORT_CHUNK_SIZE`` at a time (a server-side
    cursor on PostgreSQL), only as it is consumed, for the caller to write out one by one.
    Consume it on the thread that called this (the cursor belongs to that thread's database
    connection), and close it there if it is not consumed to the end: that closes the cursor.
    """
    sessions = LearnerSession.objects.filter(learner=learner).order_by("started_at")
    return {
        "user": {
            "username": learner.username,
            "first_name": learner.first_name,
            "last_name": learner.last_name,
            "email": learner.email,
            "role": learner.role,
            "date_joined": learner.date_joined,
            "last_login": learner.last_login,
        },
        "enrollments": [
            {"course": e.course_id, "title": e.course.title, "since": e.created_at}
            for e in learner.enrollments.select_related("course")
        ],
        "consents": [
            {
                "id": c.pk,
                "course": c.course_id,
                "scopes": c.scopes,
                "policy_version": c.policy_version,
                "granted_at": c.granted_at,
                "revoked_at": c.revoked_at,
            }
            for c in learner.consents.order_by("granted_at")
        ],
        "sessions": [
            {
                "id": s.pk,
                "course": s.course_id,
                "consent": s.consent_id,
                "status": s.status,
                "started_at": s.started_at,
                "ended_at": s.ended_at,
                "end_reason": s.end_reason,
                "last_frame_at": s.last_frame_at,
                "emotion_enabled": s.emotion_enabled,
                "client_info": s.client_info,
            }
            for s in sessions
        ],
        "readings": _export_readings(learner),
    }


def _export_readings(learner: User) -> Iterator[dict]:
    """The learner's readings in session and sequence order, one at a time (see
    ``learner_export``). Nothing is queried before the first one is asked for."""
    rows = (
        Reading.objects.filter(session__learner=learner)
        .order_by("session_id", "sequence")
        .values(*EXPORT_READING_FIELDS)
        .iterator(chunk_size=EXPORT_CHUNK_SIZE)
    )
    try:
        for row in rows:
            yield _export_reading(row)
    finally:
        rows.close()  # the server-side cursor, also when the consumer stops early


def _export_reading(row: dict) -> dict:
    crop = row.pop("face_crop")
    out = {"session": row.pop("session_id"), **row}
    out["face_crop_kept"] = crop is not None
    out["face_crop_png_base64"] = None if crop is None else base64.b64encode(crop).decode("ascii")
    return out


def learner_data_counts(*, learner: User) -> dict:
    """What ``learner_data_erase`` would erase (and keep) for ``learner``, for a confirmation
    screen: kept in the same app as the erase (``records.services``) so the two cannot drift
    apart."""
    readings = Reading.objects.filter(session__learner=learner)
    sessions = LearnerSession.objects.filter(learner=learner)
    consents = Consent.objects.filter(learner=learner)
    return {
        "sessions": sessions.count(),
        "open_sessions": sessions.filter(status=LearnerSession.Status.ACTIVE).count(),
        "readings": readings.count(),
        "face_crops": readings.filter(face_crop__isnull=False).count(),
        "consents_active": consents.filter(revoked_at__isnull=True).count(),
        "consents": consents.count(),
    }
