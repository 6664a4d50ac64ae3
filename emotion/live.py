"""Live summaries pushed to Channels groups ``session-<id>`` and ``course-<id>``.

Computed from the recent readings (by server receive time, so a learner's clock skew cannot
move a frame out of the window). Emotion fields appear only where the session and course
allow emotion inference.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from config.broadcast import course_group, group_send_many, session_group
from emotion.models import Reading
from emotion.observations import OBSERVATION_FIELDS, observations
from ml.classes import EMOTIONS
from ml.engagement import Observation, band, disengaged_for, windows
from tutoring.models import Course, LearnerSession

logger = logging.getLogger(__name__)


def _emotion_on(session: LearnerSession, course: Course) -> bool:
    return session.emotion_enabled and course.emotion_inference_enabled


#: A frame received at exactly ``now`` still counts in the current window.
_EDGE = 1e-6


def _observations(
    session: LearnerSession, emotion: bool, since: datetime, now: datetime
) -> tuple[list[Observation], datetime | None]:
    """The session's analysed readings received in ``[since, now]`` as observations (times in
    seconds relative to ``now``), and the newest one's receive time."""
    rows = list(
        Reading.objects.analysed()
        .filter(session=session, received_at__gte=since, received_at__lte=now)
        .order_by("received_at", "sequence")
        .values("received_at", *OBSERVATION_FIELDS)
    )
    obs = observations(rows, time_field="received_at", origin=now, emotion=emotion)
    return obs, (rows[-1]["received_at"] if rows else None)


def _tail(obs: list[Observation], window: float, n: int):
    """The ``n`` whole windows before ``now``, the newest ending at ``now``: the newest one is
    the tile's current window, whatever the course's alert thresholds."""
    return windows(obs, window_s=window, start=_EDGE - n * window, end=_EDGE)


def _run_start_from_db(
    session: LearnerSession, emotion: bool, now: datetime, window: float, n: int
) -> datetime:
    """Start of a disengaged run that fills the ``n`` windows looked at, read further back
    (4×, 16×, … as many windows, on the same grid) until the run is seen to begin. Only when
    no earlier summary carries it (an empty cache): a rare, bounded cost."""
    k = n
    while True:
        k *= 4
        since = now - timezone.timedelta(seconds=k * window)
        obs, _ = _observations(session, emotion, since, now)
        dis = disengaged_for(_tail(obs, window, k), _EDGE)
        if dis < k * window - 1e-3 or since <= session.started_at:
            return now - timezone.timedelta(seconds=dis)


def _carried_run_start(previous: dict | None, run_since: datetime, now: datetime):
    """What this session's previous summary says of a run that fills the look-back:
    ``(True, since)`` if that summary was made during this run (its ``disengaged_since``, or
    None if it saw none), ``(False, None)`` if it cannot tell."""
    if not previous or not previous.get("at"):
        return False, None
    at = datetime.fromisoformat(previous["at"])
    if not run_since <= at <= now:
        return False, None
    since = previous.get("disengaged_since")
    return True, (datetime.fromisoformat(since) if since else None)


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


def session_summary(
    session: LearnerSession,
    course: Course,
    now: datetime | None = None,
    previous: dict | None = None,
) -> dict:
    """The live summary of an open session at ``now``. ``previous`` (this session's last
    cached summary) carries the start of a disengaged run longer than the look-back."""
    now = now or timezone.now()
    window = settings.LIVE_WINDOW_SECONDS
    horizon = max(course.alert_disengaged_seconds, course.alert_absent_seconds) + window
    n = max(1, math.ceil(horizon / window - 1e-9))  # whole windows, the newest ending now
    emotion = _emotion_on(session, course)
    obs, last_analysed = _observations(
        session, emotion, now - timezone.timedelta(seconds=n * window), now
    )
    if last_analysed is None:
        last_analysed = (
            Reading.objects.analysed()
            .filter(session=session, received_at__lte=now)
            .order_by("-received_at")
            .values_list("received_at", flat=True)
            .first()
        )
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
    tail = _tail(obs, window, n)
    current = tail[-1].to_dict(include_emotion=emotion)
    dis = disengaged_for(tail, _EDGE)
    run_since = None
    if dis > 0:
        run_since = now - timezone.timedelta(seconds=dis)
        if dis >= n * window - 1e-3:  # the run fills the look-back: it may have begun before
            known, carried = _carried_run_start(previous, run_since, now)
            if not known:
                run_since = _run_start_from_db(session, emotion, now, window, n)
            elif carried is not None:
                run_since = min(run_since, carried)
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
    dis_for = (now - run_since).total_seconds() if run_since else 0.0
    if active and dis_for >= course.alert_disengaged_seconds:
        alerts.append({"kind": "disengaged", "seconds": round(dis_for, 1)})
    out = {
        "session": session.pk,
        "learner": session.learner_id,
        "learner_name": session.learner.display_name,
        "course": course.pk,
        "status": session.status,
        "at": now.isoformat(),
        "started_at": session.started_at.isoformat(),
        "present": present,
        "last_frame_at": session.last_frame_at.isoformat() if session.last_frame_at else None,
        "last_analysed_at": last_analysed.isoformat() if last_analysed else None,
        "seconds_since_frame": round(since_last_frame, 1) if since_last_frame is not None else None,
        "absent_for": round(absent_for, 1) if absent_for is not None else None,
        "disengaged_since": run_since.isoformat() if run_since else None,
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
    # each learner with frames in the window counts once (a mean of per-learner means), however
    # many frames their camera sent
    engagement = round(sum(engaged) / len(engaged), 4) if engaged else None
    out = {
        "course": course.pk,
        "at": timezone.now().isoformat(),
        "active_sessions": len(active),
        "present": sum(s["present"] for s in active),
        "engagement": engagement,
        "band": band(engagement) if engagement is not None else None,
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
    from django.core.cache import cache

    previous = cache.get_many([_cache_key(s.pk) for s in open_sessions.values()])
    learners, sessions = [], []
    for e in course.enrollments.select_related("learner").order_by("learner__username"):
        s = open_sessions.get(e.learner_id)
        summary = session_summary(s, course, now, previous.get(_cache_key(s.pk))) if s else None
        if summary:
            sessions.append(summary)
        learners.append(
            {
                "learner": e.learner_id,
                "learner_name": e.learner.display_name,
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


def _aged(summary: dict, course: Course, now: datetime) -> dict:
    """A cached summary of a session no batch touched, seen at ``now`` as
    :func:`session_summary` would see it: once its newest analysed frame has left the live
    window, a window without frames (no engagement, band or emotion, no disengaged alert);
    presence and the absent alert worked out again for ``now``."""
    if not summary.get("at"):  # cached before these fields existed: recomputed next batch
        return summary
    at = datetime.fromisoformat(summary["at"])
    age = max(0.0, (now - at).total_seconds())

    def when(key):
        return datetime.fromisoformat(summary[key]) if summary.get(key) else None

    out = {**summary, "at": now.isoformat()}
    for key in ("seconds_since_frame", "absent_for"):
        if summary.get(key) is not None:
            out[key] = round(summary[key] + age, 1)
    last_analysed = when("last_analysed_at")
    if last_analysed is None or (now - last_analysed).total_seconds() > summary["window_s"] - _EDGE:
        out.update(
            n_frames=0,
            presence_ratio=None,
            attention_ratio=None,
            engagement=None,
            band=None,
            disengaged_since=None,
        )
        for key in ("dominant_emotion", "emotion_distribution"):
            if key in out:
                out[key] = None
    present, absent_alert = _presence(
        active=summary["status"] == LearnerSession.Status.ACTIVE,
        now=now,
        last_face=at - timezone.timedelta(seconds=summary["absent_for"])
        if summary.get("absent_for") is not None
        else None,
        last_frame=when("last_frame_at"),
        last_analysed=last_analysed,
        started_at=when("started_at"),
        threshold=course.alert_absent_seconds,
    )
    out["present"] = present
    alerts = [absent_alert] if absent_alert else []
    since = out["disengaged_since"] and datetime.fromisoformat(out["disengaged_since"])
    if since and any(a["kind"] == "disengaged" for a in summary["alerts"]):
        alerts.append({"kind": "disengaged", "seconds": round((now - since).total_seconds(), 1)})
    out["alerts"] = alerts
    return out


def broadcast_after_batch(readings: list[Reading]) -> None:
    """After a batch: one message per touched session and one per touched course, all sent in
    one pass through the channel layer.

    Each session's latest summary is cached, so a course aggregate costs one cache read for
    the course's other open sessions rather than recomputing them on every batch (aged to now
    by :func:`_aged`); a touched session's previous summary carries the start of a long
    disengaged run.

    With Redis the course messages are coalesced (:func:`course_summary_coalesce`): several
    workers finishing batches of one course send one summary per ``LIVE_PUSH_INTERVAL_MS``.
    """
    from django.core.cache import cache

    by_session: dict[int, list[int]] = defaultdict(list)
    for r in readings:
        by_session[r.session_id].append(r.sequence)
    sessions = list(
        LearnerSession.objects.filter(pk__in=by_session).select_related("learner", "course")
    )
    open_by_course: dict[int, list[int]] = defaultdict(list)
    for pk, course_id in LearnerSession.objects.filter(
        course_id__in={s.course_id for s in sessions}, status=LearnerSession.Status.ACTIVE
    ).values_list("pk", "course_id"):
        open_by_course[course_id].append(pk)
    cached = cache.get_many(
        [_cache_key(pk) for pks in open_by_course.values() for pk in pks]
        + [_cache_key(s.pk) for s in sessions]
    )
    by_course: dict[int, list[dict]] = defaultdict(list)
    courses = {}
    now = timezone.now()
    messages: list[tuple[str, str, dict]] = []
    fresh = {}
    for s in sessions:
        summary = session_summary(s, s.course, now, cached.get(_cache_key(s.pk)))
        fresh[_cache_key(s.pk)] = summary
        summary = {**summary, "analysed_sequences": sorted(by_session[s.pk])}
        messages.append((session_group(s.pk), "session.summary", summary))
        by_course[s.course_id].append(summary)
        courses[s.course_id] = s.course
    cache.set_many(fresh, timeout=3600)
    if settings.REDIS_URL and settings.LIVE_PUSH_INTERVAL_MS > 0:
        group_send_many(messages)
        for course_id, summaries in by_course.items():
            course_summary_coalesce(course_id, [x["session"] for x in summaries])
        return
    for course_id, summaries in by_course.items():
        course = courses[course_id]
        done = {x["session"] for x in summaries}
        others = [
            cached[_cache_key(pk)]
            for pk in open_by_course[course_id]
            if pk not in done and _cache_key(pk) in cached
        ]
        everyone = summaries + [_aged(v, course, now) for v in others]
        messages.append(
            (
                course_group(course_id),
                "course.summary",
                {"sessions": summaries, "summary": course_aggregate(course, everyone)},
            )
        )
    group_send_many(messages)


def _touched_key(course_id: int) -> str:
    return f"live:touched:{course_id}"


def _push_lock_key(course_id: int) -> str:
    return f"live:push:{course_id}"


def _trailing_key(course_id: int) -> str:
    return f"live:trailing:{course_id}"


def course_summary_coalesce(course_id: int, session_ids: list[int]) -> None:
    """After a batch that touched ``session_ids`` of a course: send the course's summary now
    if none was sent in the last ``LIVE_PUSH_INTERVAL_MS``, else leave it to one push at the
    end of that interval (a task), which sends the newest summary of every session touched
    meanwhile. One push per interval and course, whichever worker and however many batches:
    each instructor's socket then takes one message per interval instead of one per batch
    per worker, which it could not keep up with."""
    from emotion.framestore import get_frame_store
    from emotion.tasks import push_course_summary

    ms = settings.LIVE_PUSH_INTERVAL_MS
    try:
        r = get_frame_store().client
        pipe = r.pipeline(transaction=False)
        pipe.sadd(_touched_key(course_id), *session_ids)
        pipe.expire(_touched_key(course_id), 3600)
        pipe.execute()
        if r.set(_push_lock_key(course_id), 1, nx=True, px=ms):
            course_summary_push(course_id)
        elif r.set(_trailing_key(course_id), 1, nx=True, px=ms):
            wait = max(0, r.pttl(_push_lock_key(course_id))) / 1000
            # to the inference workers' queue: one ran this batch, so one is there to push
            push_course_summary.apply_async(
                (course_id,), countdown=wait, queue=settings.CELERY_GPU_QUEUE
            )
    except Exception:  # best effort, like every broadcast: the readings are stored
        logger.exception("live summary of course %s not sent", course_id)


def course_summary_push(course_id: int, *, trailing: bool = False) -> None:
    """Send the course's summary made of the cached summaries of the sessions touched since
    the last push (the newest of each) and of its other open sessions, aged to now. A
    ``trailing`` push (the task) starts a new interval. Consumers drop a summary older than
    one they already sent (:class:`emotion.consumers.CourseLiveConsumer`)."""
    from django.core.cache import cache

    from emotion.framestore import get_frame_store

    r = get_frame_store().client
    if trailing:
        r.set(_push_lock_key(course_id), 1, px=settings.LIVE_PUSH_INTERVAL_MS)
        r.delete(_trailing_key(course_id))
    pipe = r.pipeline()  # read and clear at once: a session touched meanwhile is kept for next
    pipe.smembers(_touched_key(course_id))
    pipe.delete(_touched_key(course_id))
    touched = sorted(int(x) for x in pipe.execute()[0])
    course = Course.objects.filter(pk=course_id).first()
    if not touched or course is None:
        return
    open_ids = list(
        LearnerSession.objects.filter(
            course=course, status=LearnerSession.Status.ACTIVE
        ).values_list("pk", flat=True)
    )
    cached = cache.get_many([_cache_key(pk) for pk in {*touched, *open_ids}])
    now = timezone.now()
    sessions = [cached[_cache_key(pk)] for pk in touched if _cache_key(pk) in cached]
    others = [
        _aged(cached[_cache_key(pk)], course, now)
        for pk in open_ids
        if pk not in touched and _cache_key(pk) in cached
    ]
    payload = {"sessions": sessions, "summary": course_aggregate(course, sessions + others)}
    group_send_many([(course_group(course_id), "course.summary", payload)])
