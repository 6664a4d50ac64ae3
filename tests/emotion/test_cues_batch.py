"""Device frames (cues, crops) of many sockets accepted together (``device_frames_accept``): one transaction
and one live broadcast per batch, the same outcomes as ``frames_accept`` frame by frame; and
the live summary of a batch read in one query, equal to the one read per session."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from emotion import live
from emotion.framestore import get_frame_store
from emotion.models import Reading
from emotion.services import (
    IncomingFrame,
    SessionBacklogged,
    SessionClosed,
    device_frames_accept,
    frames_accept,
)
from tests.emotion.test_device_frames import CROP, cues
from tests.factories import LearnerSessionFactory
from tutoring.services import consent_revoke


def frame(seq, **kw):
    return IncomingFrame(data=b"", sequence=seq, kind="cues", cues=kw.pop("c", cues()), **kw)


@pytest.fixture
def two(classroom):
    other = LearnerSessionFactory(
        learner=classroom.other_learner,
        course=classroom.course,
        consent=classroom.other_learner.consents.get(),
    )
    return classroom.session, other


@pytest.mark.django_db
def test_frames_of_many_sessions_are_accepted_together(
    two, monkeypatch, django_capture_on_commit_callbacks
):
    a, b = two
    sent = []
    monkeypatch.setattr(live, "broadcast_after_batch", lambda rs, **kw: sent.append(rs) or {})
    frames_accept(session=a, frames=[frame(3)], enqueue=False)  # stored before: a duplicate
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        results = device_frames_accept(
            items=[
                (a, frame(3)),
                (b, frame(0)),
                (a, frame(4)),
                (a, frame(4)),  # the same sequence twice in one batch: the second is a duplicate
                (b, frame(1, c=cues(yaw=120))),
                (b, frame(None)),  # numbered by the server, after the batch's own
            ]
        )
    assert results[0].duplicates == [3] and results[0].accepted == []
    assert [x["sequence"] for x in results[1].accepted] == [0]
    assert [x["sequence"] for x in results[2].accepted] == [4]
    assert results[3].duplicates == [4] and results[3].accepted == []
    assert [x["code"] for x in results[4].rejected] == ["bad_cues"]
    assert [x["sequence"] for x in results[5].accepted] == [1]
    assert all(not x["queued"] for r in results for x in r.accepted)
    got = sorted(Reading.objects.values_list("session_id", "sequence", "face_source"))
    assert got == sorted(
        [(a.pk, 3, "device"), (a.pk, 4, "device")] + [(b.pk, 0, "device"), (b.pk, 1, "device")]
    )
    assert Reading.objects.filter(analysed_at__isnull=True).count() == 0
    # one broadcast for the whole batch, with every new reading in it
    assert [sorted((r.session_id, r.sequence) for r in batch) for batch in sent] == [
        [(a.pk, 4), (b.pk, 0), (b.pk, 1)]
    ]
    a.refresh_from_db(), b.refresh_from_db()
    assert a.last_frame_at is not None and a.last_frame_at == b.last_frame_at


@pytest.mark.django_db
def test_a_closed_or_revoked_session_fails_alone(two, classroom):
    a, b = two
    consent_revoke(learner=classroom.other_learner, course=classroom.course)
    results = device_frames_accept(items=[(a, frame(0)), (b, frame(0))])
    assert [x["sequence"] for x in results[0].accepted] == [0]
    assert isinstance(results[1], (PermissionDenied, SessionClosed))
    b.refresh_from_db()
    a.status = "ended"
    results = device_frames_accept(items=[(a, frame(1))])
    assert isinstance(results[0], SessionClosed)
    assert list(Reading.objects.values_list("session_id", "sequence")) == [(a.pk, 0)]


@pytest.mark.django_db
def test_crops_are_accepted_together_held_and_left_to_queue(two, settings):
    """Crops go in the same batch as cues frames: pending readings, their bytes held for
    inference (one round trip for all), queued by the caller; a session that would exceed
    ``max_pending`` has none of its frames accepted, as ``frames_accept`` refuses it."""
    a, b = two
    crop = lambda seq: IncomingFrame(data=CROP, sequence=seq, kind="crop", cues=cues())  # noqa: E731
    frames_accept(session=b, frames=[crop(0), crop(1)], enqueue=False)  # b: two waiting already
    results = device_frames_accept(
        items=[(a, crop(0)), (a, frame(1)), (b, crop(2)), (b, frame(3))], max_pending=2
    )
    (x,), (y,) = results[0].accepted, results[1].accepted
    assert x["queued"] is True and y["queued"] is False
    assert all(isinstance(r, SessionBacklogged) for r in results[2:])
    held = get_frame_store().get_many([x["reading"]])
    assert held == {x["reading"]: CROP}
    pending = Reading.objects.get(pk=x["reading"])
    assert pending.analysed_at is None and pending.face_source == "device"
    assert Reading.objects.get(pk=y["reading"]).analysed_at is not None
    assert sorted(Reading.objects.filter(session=b).values_list("sequence", flat=True)) == [0, 1]


@pytest.mark.django_db
def test_the_batch_summary_equals_the_one_read_per_session(two):
    a, b = two
    now = timezone.now()
    rows = []
    for i in range(90):  # past the look-back, faces coming and going, one not analysed yet
        at = now - timedelta(seconds=90 - i)
        rows.append(
            Reading(
                session=a if i % 3 else b,
                sequence=i,
                captured_at=at,
                received_at=at,
                analysed_at=None if i == 88 else at,
                error="frame_expired" if i == 40 else "",
                face_found=i % 5 != 0,
                face_source="device",
                cues=cues(yaw=float(i % 40 - 20)),
            )
        )
    Reading.objects.bulk_create(rows)
    sessions = list(type(a).objects.filter(pk__in=[a.pk, b.pk]).select_related("learner", "course"))
    recent = live._recent_many(sessions, now)
    for s in sessions:
        one = live.summarise_session(s, s.course, now).to_dict()
        assert live.summarise_session(s, s.course, now, None, recent[s.pk]).to_dict() == one


@pytest.mark.django_db
@pytest.mark.parametrize("ago_s", [0, 7, 25, 55])
def test_a_batch_reading_current_windows_gives_the_full_summaries(two, ago_s):
    """A batch reads each session's current window only, and the whole look-back of those
    whose current window is disengaged: the summaries are the ones a full read gives, at
    moments when ``a`` looks away (a run to carry) and when it looks back."""
    a, b = two
    end = timezone.now()
    rows = []
    for i in range(120):
        at = end - timedelta(seconds=120 - i)
        away = 50 <= i < 100  # ``a`` looks away for 50 s, then back
        rows += [
            Reading(
                session=s,
                sequence=i,
                captured_at=at,
                received_at=at,
                analysed_at=at,
                face_found=i % 7 != 0,
                face_source="device",
                cues=cues(yaw=70.0 if away and s == a else float(i % 20 - 10)),
            )
            for s in (a, b)
        ]
    Reading.objects.bulk_create(rows)
    now = end - timedelta(seconds=ago_s)
    sessions = list(type(a).objects.filter(pk__in=[a.pk, b.pk]).select_related("learner", "course"))
    many = live._summarise_many(sessions, now, {})
    for s in sessions:
        assert many[s.pk].to_dict() == live.summarise_session(s, s.course, now).to_dict()
    assert any(x.window.band == "disengaged" for x in many.values()) == (ago_s in (25, 55))
