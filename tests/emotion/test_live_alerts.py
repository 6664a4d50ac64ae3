"""Live alerts and the course aggregate as time passes: the disengaged alert whatever the
course's thresholds, cached summaries of learners whose camera stopped, disengagement longer
than the look-back, and readings the server could not analyse."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from emotion.fanout import SUMMARIES_EVENT
from emotion.live import (
    _cache_key,
    broadcast_after_batch,
    course_aggregate,
    course_snapshot,
    session_summary,
)
from ml.engagement import band
from tests.factories import LearnerSessionFactory, ReadingFactory
from tutoring.models import LearnerSession

AWAY = 0.8  # centre offset of a face looking away: gaze weight 0, engagement 0


def reading(session, at, seq, offset=0.0, *, face=True, error="", analysed=True):
    return ReadingFactory(
        session=session,
        sequence=seq,
        captured_at=at,
        received_at=at,
        analysed_at=at if analysed else None,
        face_found=face and not error,
        cues={"center_offset": offset, "area_fraction": 0.05} if face and not error else {},
        error=error,
    )


def frames(session, first, last, offset=0.0, seq0=0, step=1.0, **kw):
    """One reading every ``step`` s from ``first`` to ``last`` (inclusive); the session's last
    frame is the newest one."""
    out, at, seq = [], first, seq0
    while at <= last + timedelta(microseconds=1):
        out.append(reading(session, at, seq, offset, **kw))
        at += timedelta(seconds=step)
        seq += 1
    LearnerSession.objects.filter(pk=session.pk).update(last_frame_at=out[-1].received_at)
    session.refresh_from_db()
    return out


@pytest.fixture
def clock(monkeypatch):
    """``emotion.live``'s idea of now, set by the test."""
    state = {"now": timezone.now()}
    monkeypatch.setattr("emotion.live.timezone.now", lambda: state["now"])
    return state


def session_message(sent) -> tuple[str, str, dict]:
    """The one session's summary in the batch's message to the stream sockets."""
    (m,) = [m for m in sent if m[1] == SUMMARIES_EVENT]
    (payload,) = m[2]["sessions"]
    return m[0], m[1], payload


@pytest.fixture
def sent(monkeypatch):
    out = []
    monkeypatch.setattr("emotion.live.group_send_many", lambda messages: out.extend(messages))
    return out


@pytest.fixture
def no_cache(classroom):
    def forget():
        cache.delete_many(
            [_cache_key(pk) for pk in LearnerSession.objects.values_list("pk", flat=True)]
        )

    forget()
    yield forget
    forget()


def alerts(summary, kind):
    return [a for a in summary["alerts"] if a["kind"] == kind]


@pytest.mark.django_db
@pytest.mark.parametrize("threshold", [60, 61, 65, 33])
def test_the_disengaged_alert_does_not_depend_on_the_threshold_being_on_the_window_grid(
    classroom, threshold
):
    """A learner looking away for 100 s at 1 frame/s, the newest frame analysed 1.2 s before
    the summary: the alert is there whatever the threshold (61 s gave none: the newest
    window of the old grid was 1 s wide and held no frame)."""
    course = classroom.course
    course.alert_disengaged_seconds = threshold
    course.save()
    now = timezone.now()
    session = classroom.session
    frames(session, now - timedelta(seconds=101.2), now - timedelta(seconds=1.2), AWAY)
    summary = session_summary(session, course, now)
    assert summary["band"] == "disengaged"
    (alert,) = alerts(summary, "disengaged")
    assert threshold <= alert["seconds"] <= 101.2 + 10  # whole windows of 10 s


@pytest.mark.django_db
def test_the_newest_window_is_a_whole_window_and_the_same_as_the_tiles(classroom):
    """Engaged until 12 s ago, looking away since: the newest window (the tile's) is
    disengaged, so the run has begun; 12 s is less than the 60 s threshold: no alert."""
    now = timezone.now()
    session = classroom.session
    frames(session, now - timedelta(seconds=80.5), now - timedelta(seconds=13.5), 0.0)
    frames(session, now - timedelta(seconds=12.5), now - timedelta(seconds=0.5), AWAY, seq0=100)
    summary = session_summary(session, classroom.course, now)
    assert summary["band"] == "disengaged" and summary["n_frames"] == 10
    assert not alerts(summary, "disengaged")
    assert summary["disengaged_since"] is not None


@pytest.mark.django_db
def test_a_stopped_camera_leaves_no_stale_engagement_in_the_course_aggregate(
    classroom, clock, sent, no_cache
):
    """A's camera stopped 10 minutes ago at engagement 0.1 (disengaged, alerted); B is at 0.9
    now. The aggregate is B's 0.9 (it was 0.5), A shows no frames and no disengaged alert but
    is absent, and the broadcast agrees with a snapshot taken at the same moment."""
    course = classroom.course
    course.alert_disengaged_seconds = 20
    course.save()
    a = classroom.session
    b = LearnerSessionFactory(
        learner=classroom.other_learner,
        course=course,
        consent=classroom.other_learner.consents.get(),
    )
    no_cache()
    now = clock["now"]
    then = now - timedelta(minutes=10)
    ra = frames(a, then - timedelta(seconds=40), then, 0.63)  # gaze 0.1
    clock["now"] = then + timedelta(seconds=0.5)
    broadcast_after_batch(ra[-3:])
    cached = cache.get(_cache_key(a.pk))
    assert cached["engagement"] == pytest.approx(0.1, abs=1e-6)
    assert alerts(cached, "disengaged")

    rb = frames(b, now - timedelta(seconds=20), now - timedelta(seconds=1), 0.07)  # gaze 0.9
    clock["now"] = now
    sent.clear()
    broadcast_after_batch(rb[-3:])
    (course_msg,) = [m for m in sent if m[1] == "course.summary"]
    live = course_msg[2]["summary"]
    assert live["engagement"] == pytest.approx(0.9, abs=1e-4)
    assert live["band"] == "highly engaged"
    assert live["present"] == 1
    assert [(x["session"], x["kind"]) for x in live["alerts"]] == [(a.pk, "absent")]
    assert live["alerts"][0]["seconds"] == pytest.approx(600, abs=0.2)

    snap = course_snapshot(course)["summary"]
    for key in ("engagement", "band", "present", "active_sessions", "emotion_distribution"):
        assert snap[key] == live[key], key
    assert [(x["session"], x["kind"]) for x in snap["alerts"]] == [(a.pk, "absent")]
    assert snap["alerts"][0]["seconds"] == pytest.approx(live["alerts"][0]["seconds"], abs=0.2)


@pytest.mark.django_db
def test_a_cached_summary_within_the_window_is_used_as_it_is(classroom, clock, sent, no_cache):
    course = classroom.course
    a = classroom.session
    b = LearnerSessionFactory(
        learner=classroom.other_learner,
        course=course,
        consent=classroom.other_learner.consents.get(),
    )
    no_cache()
    now = clock["now"]
    ra = frames(a, now - timedelta(seconds=15), now - timedelta(seconds=4), 0.63)
    clock["now"] = now - timedelta(seconds=3)
    broadcast_after_batch(ra[-1:])
    rb = frames(b, now - timedelta(seconds=15), now - timedelta(seconds=1), 0.07)
    clock["now"] = now
    sent.clear()
    broadcast_after_batch(rb[-1:])
    live = [m for m in sent if m[1] == "course.summary"][0][2]["summary"]
    assert live["engagement"] == pytest.approx(0.5, abs=1e-4)
    assert live["present"] == 2


@pytest.mark.django_db
def test_disengagement_longer_than_the_look_back_is_counted_in_full(
    classroom, clock, sent, no_cache
):
    """Looking away for 10 minutes at 1 frame/s, a batch every 20 s: the alert says 600 s,
    not the 70 s look-back; a snapshot without the cache (a fresh Redis) says the same."""
    course = classroom.course
    session = classroom.session
    start = clock["now"] - timedelta(minutes=10)
    LearnerSession.objects.filter(pk=session.pk).update(started_at=start - timedelta(seconds=5))
    session.refresh_from_db()
    seq = 0
    for step in range(30):
        first = start + timedelta(seconds=20 * step)
        batch = frames(session, first, first + timedelta(seconds=19), AWAY, seq0=seq)
        seq += len(batch)
        clock["now"] = batch[-1].received_at + timedelta(seconds=1)
        sent.clear()
        broadcast_after_batch(batch[-2:])
    msg = session_message(sent)
    (alert,) = alerts(msg[2], "disengaged")
    assert alert["seconds"] == pytest.approx(600, abs=10)  # whole windows of 10 s
    no_cache()
    snap = course_snapshot(course)
    (alert2,) = [x for x in snap["summary"]["alerts"] if x["kind"] == "disengaged"]
    assert alert2["seconds"] == pytest.approx(alert["seconds"], abs=0.2)

    # the learner looks back: the run ends, and a new run starts from scratch
    first = clock["now"]
    batch = frames(session, first, first + timedelta(seconds=19), 0.0, seq0=seq)
    seq += len(batch)
    clock["now"] = batch[-1].received_at + timedelta(seconds=1)
    sent.clear()
    broadcast_after_batch(batch[-2:])
    msg = session_message(sent)
    assert not alerts(msg[2], "disengaged") and msg[2]["disengaged_since"] is None
    first = clock["now"]
    batch = frames(session, first, first + timedelta(seconds=29), AWAY, seq0=seq)
    clock["now"] = batch[-1].received_at + timedelta(seconds=1)
    sent.clear()
    broadcast_after_batch(batch[-2:])
    msg = session_message(sent)
    assert not alerts(msg[2], "disengaged")  # 30 s < 60 s


@pytest.mark.django_db
@pytest.mark.parametrize("outage", ["inference_failed", "pending"])
def test_an_inference_outage_after_the_last_face_is_no_data_not_absence(classroom, outage):
    """Face until 60 s ago, then the camera keeps sending but every frame fails (or waits
    for a worker): no absent alert, the learner is not marked absent."""
    now = timezone.now()
    session = classroom.session
    frames(session, now - timedelta(seconds=90), now - timedelta(seconds=60), 0.0)
    kw = {"analysed": False, "face": False} if outage == "pending" else {"error": outage}
    frames(session, now - timedelta(seconds=59), now - timedelta(seconds=1), seq0=100, **kw)
    summary = session_summary(session, classroom.course, now)
    assert not alerts(summary, "absent")
    assert summary["present"] is True
    assert summary["n_frames"] == 0 and summary["band"] is None
    assert summary["absent_for"] == pytest.approx(60, abs=0.1)  # the last face, for the page


@pytest.mark.django_db
def test_a_paused_camera_still_shows_absent(classroom):
    now = timezone.now()
    session = classroom.session
    frames(session, now - timedelta(seconds=90), now - timedelta(seconds=60), 0.0)
    summary = session_summary(session, classroom.course, now)
    (alert,) = alerts(summary, "absent")
    assert alert["seconds"] == pytest.approx(60, abs=0.1)
    assert summary["present"] is False


@pytest.mark.django_db
def test_a_learner_who_left_is_absent_even_while_frames_wait_for_inference(classroom):
    """No face in the analysed frames for 40 s, the last second's frames still pending."""
    now = timezone.now()
    session = classroom.session
    frames(session, now - timedelta(seconds=60), now - timedelta(seconds=41), 0.0)
    frames(session, now - timedelta(seconds=40), now - timedelta(seconds=2), seq0=100, face=False)
    frames(session, now - timedelta(seconds=1), now, seq0=200, analysed=False, face=False)
    summary = session_summary(session, classroom.course, now)
    assert alerts(summary, "absent") and summary["present"] is False


@pytest.mark.django_db
def test_the_course_aggregate_has_the_band_of_its_engagement(classroom):
    now = timezone.now()
    frames(classroom.session, now - timedelta(seconds=9), now, 0.35)  # gaze 0.5
    snap = course_snapshot(classroom.course)["summary"]
    assert snap["engagement"] == pytest.approx(0.5)
    assert snap["band"] == band(0.5) == "engaged"
    assert course_aggregate(classroom.course, [])["band"] is None
