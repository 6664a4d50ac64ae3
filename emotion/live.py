"""Live summaries pushed to Channels groups ``session-<id>`` and ``course-<id>``.

Computed from the recent readings (by server receive time, so a learner's clock skew cannot
move a frame out of the window). Emotion fields appear only where the session and course
allow emotion inference. This module reads the database, the cache and sends to the channel
layer; the payloads and the maths are in :mod:`emotion.summary`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from config.broadcast import course_group, group_send_many
from emotion.fanout import summaries_message
from emotion.models import Reading
from emotion.observations import OBSERVATION_FIELDS, observations
from emotion.summary import (
    HISTORY_S,
    CourseSummary,
    CurrentWindow,
    LearnerTile,
    LiveCourse,
    SessionFacts,
    SessionSummary,
    Snapshot,
    Thresholds,
    aged,
    class_history,
    course_summary,
    disengaged_seconds,
    disengaged_since,
    fills_look_back,
    look_back_windows,
    paused_after,
    recent_windows,
    summarise,
)
from ml.engagement import DISENGAGED, Observation
from tutoring.models import Course, LearnerSession

logger = logging.getLogger(__name__)

#: How long a session's summary stays cached (seconds).
SUMMARY_CACHE_TIMEOUT_S = 3600


def _emotion_on(session: LearnerSession, course: Course) -> bool:
    return session.emotion_enabled and course.emotion_inference_enabled


def _thresholds(course: Course) -> Thresholds:
    return Thresholds(
        absent_s=course.alert_absent_seconds, disengaged_s=course.alert_disengaged_seconds
    )


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
    return _as_observations(rows, emotion, now)


def _as_observations(
    rows: list[dict], emotion: bool, now: datetime
) -> tuple[list[Observation], datetime | None]:
    obs = observations(rows, time_field="received_at", origin=now, emotion=emotion)
    return obs, (rows[-1]["received_at"] if rows else None)


@dataclass
class _Recent:
    """What one query read of a session's recent readings for :func:`summarise_session`: its
    analysed readings in ``[since, now]`` (oldest first), its newest face received since
    ``since`` (None: none there, the database is asked) and whether ``since`` is the start of
    the whole look-back (else only of the current window)."""

    rows: list[dict]
    last_face: datetime | None
    whole: bool = True


def _recent_many(
    sessions: list[LearnerSession], now: datetime, *, whole: bool = True
) -> dict[int, _Recent]:
    """The look-back of every session in ``sessions`` (with ``whole`` False: only its current
    window), in one query instead of two or three per session (a batch touches many sessions:
    one round trip each was most of its cost). The rows are the readings received since the
    earliest start, pending ones too: a crop frame's face is known before it is analysed, as
    the per-session query sees it."""
    window_s = settings.LIVE_WINDOW_SECONDS
    since = {
        s.pk: now
        - timedelta(
            seconds=(look_back_windows(window_s, _thresholds(s.course)) if whole else 1) * window_s
        )
        for s in sessions
    }
    if not since:
        return {}
    out = {pk: _Recent([], None, whole) for pk in since}
    rows = (
        Reading.objects.filter(session__in=list(since), received_at__gte=min(since.values()))
        .order_by("session_id", "received_at", "sequence")
        .values("session_id", "received_at", "analysed_at", "error", *OBSERVATION_FIELDS)
    )
    for r in rows:
        recent = out[r["session_id"]]
        if r["received_at"] < since[r["session_id"]]:
            continue
        if r["face_found"] and (recent.last_face is None or r["received_at"] > recent.last_face):
            recent.last_face = r["received_at"]
        if r["analysed_at"] is not None and not r["error"] and r["received_at"] <= now:
            recent.rows.append(r)
    return out


def _run_start_from_db(
    session: LearnerSession, course: Course, emotion: bool, now: datetime, window_s: float, n: int
) -> datetime:
    """Start of a disengaged run that fills the ``n`` windows looked at, read further back
    (4×, 16×, … as many windows, on the same grid) until the run is seen to begin. Only when
    no earlier summary carries it (an empty cache): a rare, bounded cost."""
    k = n
    while True:
        k *= 4
        since = now - timedelta(seconds=k * window_s)
        obs, _ = _observations(session, emotion, since, now)
        cone = course.attention_cone_degrees
        run_s = disengaged_seconds(recent_windows(obs, window_s, k, attention_cone_degrees=cone))
        if not fills_look_back(run_s, k * window_s) or since <= session.started_at:
            return now - timedelta(seconds=run_s)


def _facts(
    session: LearnerSession,
    emotion: bool,
    now: datetime,
    last_analysed: datetime | None,
    last_face: datetime | None = None,
) -> SessionFacts:
    """The session as the database has it at ``now``; ``last_analysed`` and ``last_face`` if
    known already."""
    if last_analysed is None:
        last_analysed = (
            Reading.objects.analysed()
            .filter(session=session, received_at__lte=now)
            .order_by("-received_at")
            .values_list("received_at", flat=True)
            .first()
        )
    if last_face is None:
        last_face = (
            session.readings.filter(face_found=True)
            .order_by("-received_at")
            .values_list("received_at", flat=True)
            .first()
        )
    return SessionFacts(
        session=session.pk,
        learner=session.learner_id,
        learner_name=session.learner.display_name,
        course=session.course_id,
        status=session.status,
        started_at=session.started_at,
        emotion_enabled=emotion,
        last_frame_at=session.last_frame_at,
        last_analysed_at=last_analysed,
        last_face_at=last_face,
    )


def summarise_session(
    session: LearnerSession,
    course: Course,
    now: datetime,
    previous: SessionSummary | None = None,
    recent_rows: _Recent | None = None,
) -> SessionSummary:
    """The live summary of an open session at ``now``. ``previous`` (this session's last
    cached summary) carries the start of a disengaged run longer than the look-back;
    ``recent_rows`` (:func:`_recent_many`) is its look-back, or its current window, read
    already."""
    summary = _summarise(session, course, now, previous, recent_rows)
    if summary is None:
        whole = _recent_many([session], now)[session.pk]
        summary = _summarise(session, course, now, previous, whole)
    return summary


def _summarise(
    session: LearnerSession,
    course: Course,
    now: datetime,
    previous: SessionSummary | None,
    recent_rows: _Recent | None,
) -> SessionSummary | None:
    """:func:`summarise_session`, or None when ``recent_rows`` holds only the current window
    and that is disengaged: the run may go back further, the whole look-back is needed.
    Otherwise the older windows change nothing (no run; the tile shows the current window),
    so a batch reads one window of each session, not its whole look-back."""
    window_s = settings.LIVE_WINDOW_SECONDS
    thresholds = _thresholds(course)
    n = look_back_windows(window_s, thresholds)
    emotion = _emotion_on(session, course)
    if recent_rows is None:
        obs, last_analysed = _observations(
            session, emotion, now - timedelta(seconds=n * window_s), now
        )
        last_face = None
    else:
        obs, last_analysed = _as_observations(recent_rows.rows, emotion, now)
        last_face = recent_rows.last_face
    whole = recent_rows is None or recent_rows.whole
    cone = course.attention_cone_degrees
    recent = recent_windows(obs, window_s, n if whole else 1, attention_cone_degrees=cone)
    if len(recent) < n and recent[-1].band == DISENGAGED:
        return None
    since, settled = disengaged_since(recent, now, n * window_s, previous)
    if not settled:
        since = _run_start_from_db(session, course, emotion, now, window_s, n)
    return summarise(
        _facts(session, emotion, now, last_analysed, last_face),
        CurrentWindow.of(recent[-1], emotion=emotion),
        now=now,
        window_s=window_s,
        thresholds=thresholds,
        disengaged_since=since,
    )


def _summarise_many(
    sessions: list[LearnerSession], now: datetime, previous: dict[int, SessionSummary]
) -> dict[int, SessionSummary]:
    """The summaries of ``sessions`` (each with its course) at ``now``: one query reads every
    session's current window, and one more the whole look-back of those whose current window
    is disengaged (:func:`_summarise`)."""
    window = _recent_many(sessions, now, whole=False)
    out: dict[int, SessionSummary] = {}
    more = []
    for s in sessions:
        summary = _summarise(s, s.course, now, previous.get(s.pk), window[s.pk])
        if summary is None:
            more.append(s)
        else:
            out[s.pk] = summary
    whole = _recent_many(more, now) if more else {}
    for s in more:
        out[s.pk] = _summarise(s, s.course, now, previous.get(s.pk), whole[s.pk])
    return out


def session_summary(session: LearnerSession, course: Course, now: datetime | None = None) -> dict:
    """The payload of :func:`summarise_session` at ``now`` (default: now), without a previous
    summary to carry a long disengaged run from."""
    return summarise_session(session, course, now or timezone.now()).to_dict()


def _aggregate(course: Course, sessions: list[SessionSummary]) -> CourseSummary:
    return course_summary(
        course=course.pk,
        emotion_enabled=course.emotion_inference_enabled,
        sessions=sessions,
        now=timezone.now(),
    )


def course_aggregate(course: Course, sessions: list[SessionSummary]) -> dict:
    """The payload of the course aggregate over ``sessions``, as of now."""
    return _aggregate(course, sessions).to_dict()


def _class_history(course: Course, now: datetime):
    """The class engagement over the last ``HISTORY_S``, from the analysed readings of every
    session of the course received then (one since ended counted while it ran)."""
    window_s = settings.LIVE_WINDOW_SECONDS
    n = max(1, int(HISTORY_S // window_s))
    rows = (
        Reading.objects.analysed()
        .filter(
            session__course=course,
            received_at__gt=now - timedelta(seconds=n * window_s),
            received_at__lte=now,
        )
        .order_by("session_id", "received_at", "sequence")
        .values("session_id", "session__emotion_enabled", "received_at", *OBSERVATION_FIELDS)
    )
    by_session: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        by_session[r["session_id"]].append(r)
    obs = {
        pk: observations(
            rs,
            time_field="received_at",
            origin=now,
            emotion=rs[0]["session__emotion_enabled"] and course.emotion_inference_enabled,
        )
        for pk, rs in by_session.items()
    }
    return class_history(
        obs, now=now, window_s=window_s, n=n, attention_cone_degrees=course.attention_cone_degrees
    )


def _live_course(course: Course) -> LiveCourse:
    return LiveCourse(
        id=course.pk,
        title=course.title,
        emotion_enabled=course.emotion_inference_enabled,
        alert_absent_seconds=course.alert_absent_seconds,
        alert_disengaged_seconds=course.alert_disengaged_seconds,
        capture_fps=course.capture_fps,
        paused_after_s=paused_after(course.capture_fps),
        window_s=settings.LIVE_WINDOW_SECONDS,
    )


def course_snapshot(course: Course) -> dict:
    """What an instructor's live view starts from: every enrolled learner and their session,
    and the class engagement of the last few minutes."""
    now = timezone.now()
    open_sessions = {
        s.learner_id: s
        for s in LearnerSession.objects.filter(course=course, status=LearnerSession.Status.ACTIVE)
        .select_related("learner")
        .order_by("started_at")
    }
    previous = _cached_summaries([s.pk for s in open_sessions.values()])
    for s in open_sessions.values():
        s.course = course  # the same course: no query per session for its thresholds
    recent = _recent_many(list(open_sessions.values()), now)
    learners, sessions = [], []
    for e in course.enrollments.select_related("learner").order_by("learner__username"):
        s = open_sessions.get(e.learner_id)
        summary = summarise_session(s, course, now, previous.get(s.pk), recent[s.pk]) if s else None
        if summary:
            sessions.append(summary)
        learners.append(
            LearnerTile(
                learner=e.learner_id,
                learner_name=e.learner.display_name,
                session=summary,
            )
        )
    return Snapshot(
        course=_live_course(course),
        learners=tuple(learners),
        summary=_aggregate(course, sessions),
        history=_class_history(course, now),
    ).to_dict()


def _cache_key(session_id: int) -> str:
    return f"live:session:{session_id}"


def _cached_summaries(session_ids) -> dict[int, SessionSummary]:
    """The cached summaries of these sessions, by session id (those the cache has)."""
    from django.core.cache import cache

    ids = list(session_ids)
    found = cache.get_many([_cache_key(pk) for pk in ids])
    out = {pk: SessionSummary.from_cache(found.get(_cache_key(pk))) for pk in ids}
    return {pk: s for pk, s in out.items() if s is not None}


def _cache_summaries(summaries: dict[int, SessionSummary]) -> None:
    from django.core.cache import cache

    cache.set_many(
        {_cache_key(pk): s.to_dict() for pk, s in summaries.items()},
        timeout=SUMMARY_CACHE_TIMEOUT_S,
    )


def session_summaries_forget(session_ids) -> None:
    """Delete the cached live summaries (learner's name, engagement, emotion mix; kept an hour)
    of sessions whose data was erased or purged."""
    from django.core.cache import cache

    keys = [_cache_key(pk) for pk in session_ids]
    if keys:
        cache.delete_many(keys)


def _aged_others(
    course: Course, cached: dict[int, SessionSummary], open_ids, done, now: datetime
) -> list[SessionSummary]:
    """The cached summaries of the course's open sessions not in ``done``, aged to ``now``."""
    return [
        aged(cached[pk], now, absent_threshold_s=course.alert_absent_seconds)
        for pk in open_ids
        if pk not in done and pk in cached
    ]


def _open_sessions_by_course(course_ids) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for pk, course_id in LearnerSession.objects.filter(
        course_id__in=course_ids, status=LearnerSession.Status.ACTIVE
    ).values_list("pk", "course_id"):
        out[course_id].append(pk)
    return out


def broadcast_after_batch(readings: list[Reading], *, to_sessions: bool = True) -> dict[int, dict]:
    """After a batch: each touched session's summary, all in one message to the stream
    sockets' processes (:mod:`emotion.fanout`), and one per touched course, sent in one pass
    through the channel layer. Returns each touched session's summary, by session id: with
    ``to_sessions`` False they are not sent, and the caller hands them to the sessions'
    sockets itself (cues frames: the socket that sent the frame is in the caller's process).
    A session's summary reads only its current window unless that window is disengaged
    (:func:`_summarise_many`).

    Each session's latest summary is cached, so a course aggregate costs one cache read for
    the course's other open sessions rather than recomputing them on every batch (aged to now
    by :func:`emotion.summary.aged`); a touched session's previous summary carries the start
    of a long disengaged run.

    With Redis the course messages are coalesced (:func:`course_summary_coalesce`): several
    workers finishing batches of one course send one summary per ``LIVE_PUSH_INTERVAL_MS``.
    """
    by_session: dict[int, list[int]] = defaultdict(list)
    for r in readings:
        by_session[r.session_id].append(r.sequence)
    sessions = list(
        LearnerSession.objects.filter(pk__in=by_session).select_related("learner", "course")
    )
    # coalesced, the course message is made from the cache by the push, every interval: the
    # batch needs no other session's summary (hundreds of cache reads a batch in a big class)
    coalesced = bool(settings.REDIS_URL) and settings.LIVE_PUSH_INTERVAL_MS > 0
    open_by_course = {} if coalesced else _open_sessions_by_course({s.course_id for s in sessions})
    cached = _cached_summaries(
        [pk for pks in open_by_course.values() for pk in pks] + [s.pk for s in sessions]
    )
    now = timezone.now()
    fresh = _summarise_many(sessions, now, cached)
    _cache_summaries(fresh)
    payloads: dict[int, list[dict]] = defaultdict(list)  # by course
    for s in sessions:
        payload = {**fresh[s.pk].to_dict(), "analysed_sequences": sorted(by_session[s.pk])}
        payloads[s.course_id].append(payload)
    by_session_id = {p["session"]: p for ps in payloads.values() for p in ps}
    # to the sessions' sockets: one message for the whole batch (emotion.fanout)
    messages = [summaries_message(list(by_session_id.values()))] if to_sessions else []
    if coalesced:
        group_send_many(messages)
        for course_id, summaries in payloads.items():
            course_summary_coalesce(course_id, [x["session"] for x in summaries])
        return by_session_id
    courses = {s.course_id: s.course for s in sessions}
    for course_id, summaries in payloads.items():
        course = courses[course_id]
        done = [x["session"] for x in summaries]
        others = _aged_others(course, cached, open_by_course[course_id], set(done), now)
        everyone = [fresh[pk] for pk in done] + others
        payload = {"sessions": summaries, "summary": course_aggregate(course, everyone)}
        messages.append((course_group(course_id), "course.summary", payload))
    group_send_many(messages)
    return by_session_id


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
    cached = _cached_summaries({*touched, *open_ids})
    now = timezone.now()
    sessions = [cached[pk] for pk in touched if pk in cached]
    others = _aged_others(course, cached, open_ids, set(touched), now)
    payload = {
        "sessions": [s.to_dict() for s in sessions],
        "summary": course_aggregate(course, sessions + others),
    }
    group_send_many([(course_group(course_id), "course.summary", payload)])
