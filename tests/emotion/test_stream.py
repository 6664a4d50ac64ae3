"""WebSocket ingestion and the instructor live view, end to end."""

import asyncio
import time

import pytest
from channels.db import database_sync_to_async

from emotion.framestore import get_frame_store
from emotion.models import Reading
from emotion.stream_protocol import MAX_HEADER_BYTES, STREAM_FRAME_BYTES_CAP
from ml.classes import EMOTIONS
from tests.emotion.stream_client import StreamClient, connect, drain, frame_message


@database_sync_to_async
def analysed_count(session) -> int:
    return Reading.objects.filter(session=session, analysed_at__isnull=False).count()


@database_sync_to_async
def reading_count(session) -> int:
    return Reading.objects.filter(session=session).count()


async def wait_analysed(session, n, timeout=120):
    deadline = time.monotonic() + timeout
    while await analysed_count(session) < n:
        assert time.monotonic() < deadline, f"{await analysed_count(session)} of {n} analysed"
        await asyncio.sleep(0.2)


async def stream_50_frames(classroom, face_frames):
    live, ok, _ = await connect(f"/ws/courses/{classroom.course.pk}/live/", classroom.instructor)
    assert ok
    snap = await live.receive_json_from(timeout=10)
    assert snap["type"] == "snapshot"
    assert [x["learner_name"] for x in snap["learners"]] == ["ana", "ben"]

    comm, ok, _ = await connect(f"/ws/sessions/{classroom.session.pk}/stream/", classroom.learner)
    assert ok
    client = StreamClient(comm)
    ready = await client.ready()
    assert ready["next_sequence"] == 0 and ready["credit"] > 0
    frames = [face_frames[i % len(face_frames)] for i in range(50)]
    await client.send_all(frames)
    assert len(client.acks) == 50
    assert [a["status"] for a in client.acks] == ["accepted"] * 50
    assert [a["sequence"] for a in client.acks] == list(range(50))
    await wait_analysed(classroom.session, 50)
    assert await reading_count(classroom.session) == 50

    msgs = await drain(live, 3)
    summaries = [m for m in msgs if m["type"] == "summary"]
    assert summaries, msgs
    last = summaries[-1]
    mine = [s for s in last["sessions"] if s["session"] == classroom.session.pk][0]
    assert mine["present"] is True and mine["band"] in ("engaged", "highly engaged", "disengaged")
    assert mine["dominant_emotion"] in EMOTIONS
    assert last["summary"]["present"] == 1 and last["summary"]["emotion_distribution"]
    # the learner's own socket got summaries that returned the credit
    await drain(comm, 1)
    await comm.disconnect()
    await live.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_stream_embedded(classroom, face_frames):
    await stream_50_frames(classroom, face_frames)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_stream_over_redis_with_a_real_worker(classroom, face_frames, celery_worker):
    await stream_50_frames(classroom, face_frames)
    keys = await database_sync_to_async(lambda: get_frame_store().keys())()
    assert keys == []  # no raw frame left in Redis


async def refusal(path: str, user=None) -> tuple[int, str]:
    """A refused socket is accepted, told why, then closed with the application code (a
    close before accept would reach a browser as a failed handshake, code 1006)."""
    comm, ok, _ = await connect(path, user)
    assert ok
    msg = await comm.receive_json_from(timeout=5)
    closed = await comm.receive_output(timeout=5)
    assert closed["type"] == "websocket.close"
    assert msg["type"] == "closed" and msg["code"] == closed["code"], (msg, closed)
    return closed["code"], msg["reason"]


@pytest.mark.django_db(transaction=True)
async def test_who_may_connect(classroom):
    path = f"/ws/sessions/{classroom.session.pk}/stream/"
    assert (await refusal(path))[0] == 4401
    assert (await refusal(path, classroom.other_learner))[0] == 4404
    assert (await refusal(path, classroom.instructor))[0] == 4404
    live = f"/ws/courses/{classroom.course.pk}/live/"
    assert (await refusal(live))[0] == 4401
    assert (await refusal(live, classroom.other_instructor))[0] == 4403
    assert (await refusal(live, classroom.learner))[0] == 4403


@pytest.mark.django_db(transaction=True)
async def test_ended_or_revoked_session_is_refused_with_a_reason(classroom):
    from django.utils import timezone

    from tutoring.models import Consent, LearnerSession

    path = f"/ws/sessions/{classroom.session.pk}/stream/"
    revoke = Consent.objects.filter(pk=classroom.session.consent_id).update
    await database_sync_to_async(revoke)(revoked_at=timezone.now())
    code, reason = await refusal(path, classroom.learner)
    assert code == 4403 and reason == "consent for this course was revoked"
    end = LearnerSession.objects.filter(pk=classroom.session.pk).update
    await database_sync_to_async(end)(status=LearnerSession.Status.ENDED, end_reason="superseded")
    code, reason = await refusal(path, classroom.learner)
    assert code == 4409 and reason.startswith("a newer session was started")


@pytest.mark.django_db(transaction=True)
async def test_credit_window_drops_frames_beyond_capacity(classroom, face_frames, settings):
    settings.STREAM_MAX_IN_FLIGHT = 5
    settings.INFERENCE_BATCH_WAIT_MS = 3000  # nothing is analysed during the burst
    comm, ok, _ = await connect(f"/ws/sessions/{classroom.session.pk}/stream/", classroom.learner)
    client = StreamClient(comm)
    await client.ready()
    for i in range(12):
        await comm.send_to(bytes_data=frame_message(i, face_frames[i]))
    while len(client.acks) < 12:
        assert await client.pump(timeout=10)
    statuses = [a["status"] for a in client.acks]
    assert statuses == ["accepted"] * 5 + ["dropped"] * 7
    assert client.acks[4]["credit"] == 0 and client.acks[-1]["reason"] == "no credit"
    await wait_analysed(classroom.session, 5, timeout=30)
    assert await reading_count(classroom.session) == 5  # dropped frames left no trace
    # credit comes back with the summary once the batch is analysed
    while not client.summaries:
        assert await client.pump(timeout=10)
    assert client.summaries[-1]["credit"] == 5
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_reconnecting_does_not_pile_up_frames_waiting_for_inference(
    classroom, face_frames, settings
):
    """A closed socket gives its credit back before its frames are analysed, so a client that
    reconnects in a loop got a fresh window each time; the session's own cap
    (max_pending_per_session, as for REST uploads) drops what goes beyond it."""
    settings.EMOTION_LIMITS = {**settings.EMOTION_LIMITS, "max_pending_per_session": 6}
    settings.INFERENCE_BATCH_WAIT_MS = 5000  # nothing is analysed during the test
    statuses = []
    for attempt in range(3):
        comm, ok, _ = await connect(
            f"/ws/sessions/{classroom.session.pk}/stream/", classroom.learner
        )
        assert ok
        client = StreamClient(comm)
        assert (await client.ready())["credit"] == 4
        for i in range(4):
            seq = attempt * 4 + i
            await comm.send_to(bytes_data=frame_message(seq, face_frames[seq]))
        while len(client.acks) < 4:
            assert await client.pump(timeout=10)
        statuses += [a["status"] for a in client.acks]
        await comm.disconnect()
    assert statuses == ["accepted"] * 6 + ["dropped"] * 6
    assert "6 frame(s) of this session are still waiting" in client.acks[-1]["reason"]
    assert await reading_count(classroom.session) == 6
    await wait_analysed(classroom.session, 6, timeout=30)  # the batcher's flush, before teardown


@pytest.mark.django_db(transaction=True)
async def test_bad_stream_messages(classroom, face_frames):
    comm, _, _ = await connect(f"/ws/sessions/{classroom.session.pk}/stream/", classroom.learner)
    client = StreamClient(comm)
    await client.ready()
    await comm.send_to(text_data="not json")
    assert (await comm.receive_json_from())["type"] == "error"
    await comm.send_to(bytes_data=frame_message(0, b"this is not a jpeg"))
    ack = await comm.receive_json_from()
    assert ack["status"] == "rejected" and ack["code"] == "unsupported_type"
    # the text-header form
    await comm.send_to(text_data='{"type": "frame", "sequence": 7}')
    await comm.send_to(bytes_data=face_frames[0])
    ack = await comm.receive_json_from()
    assert ack == {"type": "ack", "sequence": 7, "status": "accepted", "credit": ack["credit"]}
    await comm.send_to(bytes_data=frame_message(7, face_frames[0]))
    assert (await comm.receive_json_from())["status"] == "duplicate"
    await comm.send_to(bytes_data=frame_message(-3, face_frames[0]))
    assert (await comm.receive_json_from())["code"] == "bad_sequence"
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_malformed_binary_header_is_rejected_as_such(classroom, face_frames):
    comm, _, _ = await connect(f"/ws/sessions/{classroom.session.pk}/stream/", classroom.learner)
    await StreamClient(comm).ready()
    jpeg = face_frames[0]
    good = frame_message(0, jpeg)
    n = int.from_bytes(good[:4], "big")
    malformed = {
        "too short": b"\0\0",
        "zero length": (0).to_bytes(4, "big") + jpeg,
        "length over the maximum": (MAX_HEADER_BYTES + 1).to_bytes(4, "big") + b"{}" + jpeg,
        "image without a header": jpeg,
        "length past the end": (50).to_bytes(4, "big") + b'{"sequence": 0}',
        "not JSON": (4).to_bytes(4, "big") + b"{seq" + jpeg,
        "not an object": (3).to_bytes(4, "big") + b"[0]" + jpeg,
        "truncated JSON": (n - 1).to_bytes(4, "big") + good[4 : 4 + n - 1] + jpeg,
    }
    for what, message in malformed.items():
        await comm.send_to(bytes_data=message)
        ack = await comm.receive_json_from()
        assert ack["status"] == "rejected" and ack["code"] == "bad_header", (what, ack)
        assert ack["reason"] and ack["credit"] > 0, (what, ack)
    await comm.send_to(bytes_data=jpeg)
    assert "without a header" in (await comm.receive_json_from())["reason"]
    assert await reading_count(classroom.session) == 0  # nothing was taken for an image
    await comm.send_to(bytes_data=good)  # and the socket still works
    assert (await comm.receive_json_from())["status"] == "accepted"
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_frame_limit_fits_one_websocket_message(classroom, face_frames, settings):
    path = f"/ws/sessions/{classroom.session.pk}/stream/"
    comm, _, _ = await connect(path, classroom.learner)
    ready = await StreamClient(comm).ready()
    # the configured 2 MiB would not fit in one WebSocket message: the socket's own cap applies
    assert settings.EMOTION_LIMITS["max_frame_bytes"] > STREAM_FRAME_BYTES_CAP
    assert ready["max_frame_bytes"] == STREAM_FRAME_BYTES_CAP
    over = face_frames[0] + b"\0" * (STREAM_FRAME_BYTES_CAP + 1 - len(face_frames[0]))
    await comm.send_to(bytes_data=frame_message(0, over))
    ack = await comm.receive_json_from()
    assert (ack["sequence"], ack["status"], ack["code"]) == (0, "rejected", "too_large")
    assert f"limit of {STREAM_FRAME_BYTES_CAP}" in ack["reason"]
    await comm.disconnect()

    # a smaller configured limit is the one advertised and enforced
    settings.EMOTION_LIMITS = {**settings.EMOTION_LIMITS, "max_frame_bytes": len(face_frames[0])}
    comm, _, _ = await connect(path, classroom.learner)
    assert (await StreamClient(comm).ready())["max_frame_bytes"] == len(face_frames[0])
    await comm.send_to(bytes_data=frame_message(1, face_frames[0]))
    assert (await comm.receive_json_from())["status"] == "accepted"
    await comm.send_to(bytes_data=frame_message(2, face_frames[0] + b"\0"))
    assert (await comm.receive_json_from())["code"] == "too_large"
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_engagement_only_sends_no_emotion(classroom, face_frames):
    @database_sync_to_async
    def engagement_only():
        classroom.course.emotion_inference_enabled = False
        classroom.course.save()
        classroom.session.emotion_enabled = False
        classroom.session.save()

    await engagement_only()
    live, _, _ = await connect(f"/ws/courses/{classroom.course.pk}/live/", classroom.instructor)
    snap = await live.receive_json_from()
    comm, _, _ = await connect(f"/ws/sessions/{classroom.session.pk}/stream/", classroom.learner)
    client = StreamClient(comm)
    await client.ready()
    await client.send_all(face_frames[:6])
    await wait_analysed(classroom.session, 6)
    msgs = [snap] + await drain(live, 2) + await drain(comm, 1) + client.summaries
    text = str(msgs)
    assert any(m["type"] == "summary" for m in msgs)
    for word in ("emotion_distribution", "dominant_emotion", "happy", "neutral", "probs"):
        assert word not in text
    stored = await database_sync_to_async(
        lambda: Reading.objects.filter(session=classroom.session, probs__isnull=False).count()
    )()
    assert stored == 0
    await comm.disconnect()
    await live.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_ending_the_session_closes_the_stream(classroom, api_client_for):
    comm, _, _ = await connect(f"/ws/sessions/{classroom.session.pk}/stream/", classroom.learner)
    await StreamClient(comm).ready()
    live, _, _ = await connect(f"/ws/courses/{classroom.course.pk}/live/", classroom.instructor)
    await live.receive_json_from()
    r = await database_sync_to_async(
        lambda: api_client_for(classroom.learner).post(f"/api/sessions/{classroom.session.pk}/end/")
    )()
    assert r.status_code == 200
    closed = await comm.receive_json_from(timeout=5)
    assert closed["type"] == "closed" and closed["code"] == 4409
    assert closed["reason"].startswith("the session was ended")
    assert (await comm.receive_output(timeout=5)) == {"type": "websocket.close", "code": 4409}
    ended = await live.receive_json_from(timeout=5)
    assert ended["type"] == "session_ended" and ended["session"] == classroom.session.pk


@pytest.mark.django_db(transaction=True)
async def test_a_socket_that_crashes_gives_its_frames_in_flight_back(
    classroom, face_frames, settings, monkeypatch
):
    """The database goes away mid-stream: the consumer raises, and Channels does not call
    disconnect(). The socket's frames in flight must go back to the process's budget, or
    after a few such crashes no learner on this server gets credit any more."""
    from emotion import consumers
    from emotion.batcher import get_batcher

    settings.INFERENCE_BATCH_WAIT_MS = 3000  # nothing is analysed meanwhile
    real_accept = consumers.frames_accept
    calls = []

    def accept_then_fail(**kw):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("the database went away")
        return real_accept(**kw)

    monkeypatch.setattr(consumers, "frames_accept", accept_then_fail)
    comm, ok, _ = await connect(f"/ws/sessions/{classroom.session.pk}/stream/", classroom.learner)
    client = StreamClient(comm)
    await client.ready()
    for i in range(2):
        await comm.send_to(bytes_data=frame_message(i, face_frames[i]))
    while len(client.acks) < 2:
        assert await client.pump(timeout=10)
    assert [a["status"] for a in client.acks] == ["accepted", "accepted"]
    assert get_batcher().in_flight_total == 2
    await comm.send_to(bytes_data=frame_message(2, face_frames[2]))
    with pytest.raises(RuntimeError, match="went away"):
        await comm.receive_output(timeout=10)
    assert get_batcher().in_flight_total == 0


@pytest.mark.django_db(transaction=True)
async def test_an_unusable_captured_at_is_rejected_and_the_socket_stays_open(
    classroom, face_frames
):
    """A time that is not one (text, a naive time, or well-formed but impossible: February
    30th, an offset of 24 h, which used to raise out of the consumer and close it with
    1011) is a per-frame ``bad_timestamp``."""
    comm, _, _ = await connect(f"/ws/sessions/{classroom.session.pk}/stream/", classroom.learner)
    await StreamClient(comm).ready()
    bad = ["soon", "2026-03-01T12:00:00", "2026-02-30T00:00:00+00:00", "2026-01-01T00:00:00+24:00"]
    for seq, when in enumerate(bad):
        await comm.send_to(bytes_data=frame_message(seq, face_frames[0], captured_at=when))
        ack = await comm.receive_json_from(timeout=10)
        assert (ack["sequence"], ack["status"], ack["code"]) == (seq, "rejected", "bad_timestamp")
    await comm.send_to(bytes_data=frame_message(9, face_frames[0]))
    assert (await comm.receive_json_from(timeout=10))["status"] == "accepted"
    assert await reading_count(classroom.session) == 1
    await comm.disconnect()
