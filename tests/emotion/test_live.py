"""The live summary an instructor's dashboard shows, from a session's recent readings."""

from datetime import timedelta

import pytest
from django.utils import timezone

from emotion.live import session_summary
from tests.factories import ReadingFactory


@pytest.mark.django_db
def test_frames_the_server_could_not_analyse_are_no_data_not_an_absent_face(classroom):
    """A worker outage leaves frames marked frame_expired: they must not pull the learner's
    presence down on the dashboard (as the reports leave them out too)."""
    now = timezone.now()
    session = classroom.session
    for i in range(6):
        at = now - timedelta(seconds=8 - i)
        ReadingFactory(session=session, sequence=i, received_at=at, captured_at=at)
    for i in range(6, 10):
        at = now - timedelta(seconds=8 - i + 6)
        ReadingFactory(
            session=session,
            sequence=i,
            received_at=at,
            captured_at=at,
            face_found=False,
            cues={},
            error="frame_expired",
        )
    summary = session_summary(session, session.course, now)
    assert summary["n_frames"] == 6
    assert summary["presence_ratio"] == 1.0


@pytest.mark.django_db
def test_a_snapshot_carries_the_class_engagement_of_the_last_minutes(classroom):
    """A reloaded live view draws the class chart from the snapshot: one point per live
    window with frames, from sessions open then (one since ended included)."""
    from emotion.live import course_snapshot

    now = timezone.now()
    session = classroom.session
    for i in range(5):
        at = now - timedelta(seconds=95 - i)  # nine live windows back, in one window
        ReadingFactory(session=session, sequence=i, received_at=at, captured_at=at)
    session.status = "ended"
    session.save()
    snap = course_snapshot(classroom.course)
    assert [p["engagement"] for p in snap["history"]] == [1.0]
    assert snap["course"]["paused_after_s"] >= 5
    assert snap["learners"][0]["session"] is None  # ended: no tile values
