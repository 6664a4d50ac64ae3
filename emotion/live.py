"""Live summaries pushed to Channels groups ``session-<id>`` and ``course-<id>``.

Computed from the recent readings (by server receive time, so a learner's clock skew cannot
move a frame out of the window). Emotion fields appear only where the session and course
allow emotion inference.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from config.broadcast import group_send_many
from emotion.models import Reading
from ml.classes import EMOTIONS
from ml.engagement import Observation, disengaged_for, windows
from tutoring.models import Course, LearnerSession


def session_group(session_id: int) -> str:
    return f"session-{session_id}"


def course_group(course_id: int) -> str:
    return f"course-{course_id}"


def _emotion_on(session: LearnerSession, course: Course) -> bool:
    return session.emotion_enabled and course.emotion_inference_enabled


#: A frame received at exactly ``now`` still counts in the current window.
_EDGE = 1e-6


def _presence(
    *,
    active: bool,
    now: datetime,
    last_face: datetime | None,
    last_frame: datetime | None,
    last_analysed: datetime | None,
    started_at: datetime,
    threshold: float,
) -> tuple[bool, dict | None]:
    """``(present, absent alert or None)``.

    Absence runs from the last face (or the session's start). While the camera is sending
    (a frame within ``threshold``) but its newest frames are not analysed yet or could not be
    (pending, ``inference_failed``, expired), the time after the newest analysed frame is no
    data: only absence seen in analysed frames counts. A camera that sends nothing (paused,
    unplugged) is absent from the last face on, as the page shows it.
    """
    sending = last_frame is not None and (now - last_frame).total_seconds() <= threshold
    if sending and (last_analysed is None or last_analysed < last_frame):
        known_until = last_analysed or started_at
    else:
        known_until = now
    ref = last_face or started_at
    measured = (known_until - ref).total_seconds()
    present = bool(active and last_face is not None and measured <= threshold)
    alert = None
    if active and measured > threshold:
        alert = {"kind": "absent", "seconds": round((now - ref).total_seconds(), 1)}
    return present, alert


def session_summary(session: LearnerSession, course: Course, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    window = settings.LIVE_WINDOW_SECONDS
    horizon = max(course.alert_disengaged_seconds, course.alert_absent_seconds) + window
    # whole windows, the newest ending at now: it is the tile's current window, whatever the
    # course's alert thresholds (a grid from now - horizon left a sliver of a newest window)
    n = max(1, math.ceil(horizon / window - 1e-9))
    emotion = _emotion_on(session, course)
    recent = list(
        Reading.objects.filter(
            session=session,
            analysed_at__isnull=False,
            error="",  # a frame the server could not analyse is no data, not an absent face
            received_at__gte=now - timezone.timedelta(seconds=n * window),
            received_at__lte=now,
        )
        .order_by("received_at", "sequence")
        .values("received_at", "face_found", "cues", "probs")
    )
    last_analysed = recent[-1]["received_at"] if recent else None
    if last_analysed is None:
        last_analysed = (
            Reading.objects.filter(
                session=session, analysed_at__isnull=False, error="", received_at__lte=now
            )
            .order_by("-received_at")
            .values_list("received_at", flat=True)
            .first()
        )
    t_now = now.timestamp()
    obs = [
        Observation(
            t=r["received_at"].timestamp() - t_now,
            face=r["face_found"],
            center_offset=(r["cues"] or {}).get("center_offset") if r["face_found"] else None,
            area_fraction=(r["cues"] or {}).get("area_fraction") if r["face_found"] else None,
            probs=r["probs"] if (emotion and r["face_found"] and r["probs"]) else None,
        )
        for r in recent
    ]
    last_face = (
        session.readings.filter(face_found=True)
        .order_by("-received_at")
        .values_list("received_at", flat=True)
        .first()
    )
    absent_for = (now - last_face).total_seconds() if last_face else None
    since_last_frame = (
        (now - session.last_frame_at).total_seconds() if session.last_frame_at else None
    )
    tail = windows(obs, window_s=window, start=_EDGE - n * window, end=_EDGE)
    current = tail[-1].to_dict(include_emotion=emotion)
    dis_for = disengaged_for(tail, _EDGE)
    active = session.status == LearnerSession.Status.ACTIVE
    present, absent_alert = _presence(
        active=active,
        now=now,
        last_face=last_face,
        last_frame=session.last_frame_at,
        last_analysed=last_analysed,
        started_at=session.started_at,
        threshold=course.alert_absent_seconds,
    )
    alerts = [absent_alert] if absent_alert else []
    if active and dis_for >= course.alert_disengaged_seconds:
        alerts.append({"kind": "disengaged", "seconds": round(dis_for, 1)})
    out = {
        "session": session.pk,
        "learner": session.learner_id,
        "learner_name": session.learner.get_full_name() or session.learner.username,
        "course": course.pk,
        "status": session.status,
        "present": present,
        "last_frame_at": session.last_frame_at.isoformat() if session.last_frame_at else None,
        "seconds_since_frame": round(since_last_frame, 1) if since_last_frame is not None else None,
        "absent_for": round(absent_for, 1) if absent_for is not None else None,
        "window_s": window,
        "n_frames": current["n_frames"],
        "presence_ratio": current["presence_ratio"],
        "attention_ratio": current["attention_ratio"],
        "engagement": current["engagement"],
        "band": current["band"],
        "alerts": alerts,
        "emotion_enabled": emotion,
    }
    if emotion:
        out["dominant_emotion"] = current.get("dominant_emotion")
        out["emotion_distribution"] = current.get("emotion_distribution")
    return out


def course_aggregate(course: Course, sessions: list[dict]) -> dict:
    active = [s for s in sessions if s["status"] == "active"]
    engaged = [s["engagement"] for s in active if s["n_frames"]]
    out = {
        "course": course.pk,
        "at": timezone.now().isoformat(),
        "active_sessions": len(active),
        "present": sum(s["present"] for s in active),
        "engagement": round(sum(engaged) / len(engaged), 4) if engaged else None,
        "alerts": [
            {
                **a,
                "learner": s["learner"],
                "learner_name": s["learner_name"],
                "session": s["session"],
            }
            for s in active
            for a in s["alerts"]
        ],
        "emotion_enabled": course.emotion_inference_enabled,
    }
    if course.emotion_inference_enabled:
        dists = [s["emotion_distribution"] for s in active if s.get("emotion_distribution")]
        out["emotion_distribution"] = (
            {e: round(sum(d[e] for d in dists) / len(dists), 4) for e in EMOTIONS}
            if dists
            else None
        )
    return out


def course_snapshot(course: Course) -> dict:
    """What an instructor's live view starts from: every enrolled learner and their session."""
    now = timezone.now()
    open_sessions = {
        s.learner_id: s
        for s in LearnerSession.objects.filter(course=course, status=LearnerSession.Status.ACTIVE)
        .select_related("learner")
        .order_by("started_at")
    }
    learners, sessions = [], []
    for e in course.enrollments.select_related("learner").order_by("learner__username"):
        s = open_sessions.get(e.learner_id)
        summary = session_summary(s, course, now) if s else None
        if summary:
            sessions.append(summary)
        learners.append(
            {
                "learner": e.learner_id,
                "learner_name": e.learner.get_full_name() or e.learner.username,
                "session": summary,
            }
        )
    return {
        "course": {
            "id": course.pk,
            "title": course.title,
            "emotion_enabled": course.emotion_inference_enabled,
            "alert_absent_seconds": course.alert_absent_seconds,
            "alert_disengaged_seconds": course.alert_disengaged_seconds,
        },
        "learners": learners,
        "summary": course_aggregate(course, sessions),
    }


def _cache_key(session_id: int) -> str:
    return f"live:session:{session_id}"


def session_summaries_forget(session_ids) -> None:
    """Delete the cached live summaries (learner's name, engagement, emotion mix; kept an hour)
    of sessions whose data was erased or purged."""
    from django.core.cache import cache

    keys = [_cache_key(pk) for pk in session_ids]
    if keys:
        cache.delete_many(keys)


def _still_present(summary: dict, course: Course, now: datetime) -> dict:
    """A cached summary aged to ``now``: present only if a frame came recently enough."""
    if summary.get("last_frame_at"):
        age = (now - datetime.fromisoformat(summary["last_frame_at"])).total_seconds()
        if age > course.alert_absent_seconds and summary["present"]:
            summary = {
                **summary,
                "present": False,
                "alerts": summary["alerts"] + [{"kind": "absent", "seconds": round(age, 1)}],
            }
    return summary


def broadcast_after_batch(readings: list[Reading]) -> None:
    """After a batch: one message per touched session and one per touched course, all sent in
    one pass through the channel layer.

    Each session's latest summary is cached, so a course aggregate costs one cache read for
    the course's other open sessions rather than recomputing them on every batch.
    """
    from django.core.cache import cache

    by_session: dict[int, list[int]] = defaultdict(list)
    for r in readings:
        by_session[r.session_id].append(r.sequence)
    sessions = LearnerSession.objects.filter(pk__in=by_session).select_related("learner", "course")
    by_course: dict[int, list[dict]] = defaultdict(list)
    courses = {}
    now = timezone.now()
    messages: list[tuple[str, str, dict]] = []
    for s in sessions:
        summary = session_summary(s, s.course, now)
        cache.set(_cache_key(s.pk), summary, timeout=3600)
        summary = {**summary, "analysed_sequences": sorted(by_session[s.pk])}
        messages.append((session_group(s.pk), "session.summary", summary))
        by_course[s.course_id].append(summary)
        courses[s.course_id] = s.course
    for course_id, summaries in by_course.items():
        course = courses[course_id]
        done = {x["session"] for x in summaries}
        others = [
            pk
            for pk in LearnerSession.objects.filter(
                course=course, status=LearnerSession.Status.ACTIVE
            ).values_list("pk", flat=True)
            if pk not in done
        ]
        cached = cache.get_many([_cache_key(pk) for pk in others])
        everyone = summaries + [_still_present(v, course, now) for v in cached.values()]
        messages.append(
            (
                course_group(course_id),
                "course.summary",
                {"sessions": summaries, "summary": course_aggregate(course, everyone)},
            )
        )
    group_send_many(messages)
