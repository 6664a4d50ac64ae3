"""Open sessions that take no frame for SESSION_IDLE_MINUTES are ended (`idle`), then fall
under retention: a closed tab never leaves a session (and its browser details) open for ever."""

from datetime import timedelta

import cv2
import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone

from emotion.services import IncomingFrame, frames_accept
from records.services import sessions_purge_expired
from tests.factories import LearnerSessionFactory
from tests.tutoring.conftest import ended_broadcasts
from tutoring import services
from tutoring.models import LearnerSession
from tutoring.tasks import end_idle_sessions


@pytest.fixture
def idle_world(world, settings):
    """session_a: last frame 61 min ago; session_b: a frame 59 min ago; a third session started
    2 h ago that never took a frame; a fourth ended long ago (left as it is)."""
    settings.SESSION_IDLE_MINUTES = 60
    now = timezone.now()
    LearnerSession.objects.filter(pk=world.session_a.pk).update(
        started_at=now - timedelta(hours=3), last_frame_at=now - timedelta(minutes=61)
    )
    LearnerSession.objects.filter(pk=world.session_b.pk).update(
        started_at=now - timedelta(hours=3), last_frame_at=now - timedelta(minutes=59)
    )
    silent = LearnerSessionFactory(
        learner=world.learner_a,
        course=world.other_course,
        started_at=now - timedelta(hours=2),
    )
    ended = LearnerSessionFactory(
        learner=world.learner_b,
        course=world.other_course,
        started_at=now - timedelta(days=3),
        status="ended",
        ended_at=now - timedelta(days=2),
        end_reason="ended",
    )
    return world, silent, ended


def status(session):
    session.refresh_from_db()
    return session.status, session.end_reason


def test_idle_sessions_are_ended_and_the_dashboard_and_stream_are_told(
    idle_world, sent, django_capture_on_commit_callbacks
):
    world, silent, ended = idle_world
    with django_capture_on_commit_callbacks(execute=True):
        got = services.sessions_end_idle()
    assert sorted(got) == sorted([world.session_a.pk, silent.pk])
    assert status(world.session_a) == ("ended", "idle")
    assert status(silent) == ("ended", "idle")
    assert status(world.session_b) == ("active", "")  # a frame 59 minutes ago
    assert status(ended) == ("ended", "ended")  # untouched
    assert ended_broadcasts(sent, world.session_a) == {
        (f"course-{world.course.pk}", "idle"),
        (f"session-{world.session_a.pk}", "idle"),
    }
    # idempotent
    assert services.sessions_end_idle() == []


def test_the_threshold_comes_from_the_setting(idle_world, settings):
    world, silent, _ = idle_world
    settings.SESSION_IDLE_MINUTES = 180
    assert services.sessions_end_idle() == []
    settings.SESSION_IDLE_MINUTES = 30
    assert len(services.sessions_end_idle()) == 3  # session_b too


def test_a_frame_keeps_a_session_open(idle_world):
    world, _, _ = idle_world
    ok, jpeg = cv2.imencode(".jpg", np.full((48, 48, 3), 128, np.uint8))
    result = frames_accept(
        session=world.session_a, enqueue=False, frames=[IncomingFrame(jpeg.tobytes())]
    )
    assert result.accepted and not result.rejected
    assert world.session_a.pk not in services.sessions_end_idle()
    assert status(world.session_a) == ("active", "")


def test_an_idle_session_ends_then_goes_with_retention(idle_world):
    world, silent, _ = idle_world
    services.sessions_end_idle()
    later = timezone.now() + timedelta(days=world.other_course.retention_days + 1)
    deleted = sessions_purge_expired(now=later)
    assert deleted[world.other_course.pk] >= 1
    assert not LearnerSession.objects.filter(pk=silent.pk).exists()
    assert LearnerSession.objects.filter(pk=world.session_b.pk).exists()  # still open


def test_the_task_is_scheduled_and_the_embedded_loop_runs_it(idle_world, monkeypatch, caplog):
    from django.conf import settings

    entry = settings.CELERY_BEAT_SCHEDULE["end-idle-sessions"]
    assert entry["task"] == "tutoring.tasks.end_idle_sessions"
    assert entry["schedule"] <= 300
    world, silent, _ = idle_world
    assert sorted(end_idle_sessions.delay().get(timeout=10)) == sorted(
        [world.session_a.pk, silent.pk]
    )
    LearnerSession.objects.filter(pk=world.session_b.pk).update(
        last_frame_at=timezone.now() - timedelta(hours=2)
    )
    monkeypatch.setattr(
        "emotion.services.readings_requeue_stale", lambda *, older_than_s: 0
    )  # the real one would run inference in this process
    with caplog.at_level("INFO", logger="tutoring.periodic"):
        call_command("run_periodic", "--once")
    assert status(world.session_b) == ("ended", "idle")
    assert "end_idle: 1 idle session(s) ended" in caplog.text


def test_the_learner_is_told_why(idle_world):
    from emotion.stream_protocol import ended_reason

    assert "no frame arrived" in ended_reason("idle")
