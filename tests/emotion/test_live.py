"""The live summary an instructor's dashboard shows, from a session's recent readings."""

from datetime import timedelta

import pytest
from django.utils import timezone

from emotion.live import session_summary
from tests.factories import LearnerSessionFactory, ReadingFactory


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


@pytest.mark.django_db
def test_device_frames_show_looking_away_and_eyes_closed_with_the_courses_cone(classroom):
    """Five device frames, two with the head turned 35° and one with the eyes closed: with the
    default 25° cone the tile reads looking away 40 %, eyes closed 20 %; a course with a 40°
    cone counts them all as facing. A server-only window keeps the old payload."""
    now = timezone.now()
    session = classroom.session
    for i, (yaw, eye) in enumerate([(0, 0.3), (5, 0.3), (35, 0.3), (-35, 0.3), (0, 0.1)]):
        at = now - timedelta(seconds=5 - i)
        cues = {
            "face": True,
            "box": [0.3, 0.3, 0.3, 0.4],
            "yaw": yaw,
            "pitch": 0.0,
            "roll": 0.0,
            "eye_open_left": eye,
            "eye_open_right": eye,
            "center_offset": 0.0,
            "area_fraction": 0.12,
        }
        ReadingFactory(
            session=session,
            sequence=i,
            received_at=at,
            captured_at=at,
            face_source="device",
            cues=cues,
        )
    summary = session_summary(session, session.course, now)
    assert summary["device_ratio"] == 1.0 and summary["presence_ratio"] == 1.0
    assert summary["looking_away_ratio"] == pytest.approx(0.4)
    assert summary["eyes_closed_ratio"] == pytest.approx(0.2)
    assert summary["head_motion"] > 0
    session.course.attention_cone_degrees = 40
    session.course.save()
    wide = session_summary(session, session.course, now)
    assert wide["looking_away_ratio"] == 0.0 and wide["engagement"] > summary["engagement"]

    other = classroom.other_learner
    server = LearnerSessionFactory(
        learner=other, course=classroom.course, consent=other.consents.get()
    )
    ReadingFactory(session=server, sequence=0, received_at=now, captured_at=now)
    plain = session_summary(server, server.course, now)
    assert plain["n_frames"] == 1 and "device_ratio" not in plain
