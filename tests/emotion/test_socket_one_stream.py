"""One live stream socket per session: a newer one replaces the older.

Each stream socket had its own credit window (``STREAM_MAX_IN_FLIGHT``) and nothing stopped
a learner from opening many for the same session, so one learner could hold the whole
process's budget (``STREAM_MAX_IN_FLIGHT_TOTAL``) and every other learner on that server got
no credit. Now a socket that opens for a session closes the older ones (through the session's
channel-layer group, so on any server process) with 4403 and a reason: a code the recorder
takes as final, so two tabs do not take the session from each other for ever.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from emotion.stream_protocol import REPLACED_REASON
from tests.emotion.stream_client import StreamClient, connect, frame_message
from tests.factories import LearnerSessionFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def nothing_analysed(settings):
    """Frames stay in flight for the whole test: no batch is queued meanwhile."""
    settings.INFERENCE_BATCH_WAIT_MS = 60_000
    settings.INFERENCE_BATCH_SIZE = 1000


async def open_stream(session, user) -> tuple[object, dict]:
    comm, ok, _ = await connect(f"/ws/sessions/{session.pk}/stream/", user)
    assert ok
    return comm, await StreamClient(comm).ready()


async def send_frames(comm, sequences, data) -> list[dict]:
    acks = []
    for seq in sequences:
        await comm.send_to(bytes_data=frame_message(seq, data))
        acks.append(await comm.receive_json_from(timeout=10))
    return acks


async def assert_replaced(comm) -> None:
    msg = await comm.receive_json_from(timeout=10)
    assert msg == {"type": "closed", "code": 4403, "reason": REPLACED_REASON}
    assert await comm.receive_output(timeout=10) == {"type": "websocket.close", "code": 4403}


async def test_a_newer_stream_replaces_the_older(classroom, empty_frame, nothing_analysed):
    old, _ = await open_stream(classroom.session, classroom.learner)
    assert [a["status"] for a in await send_frames(old, [0], empty_frame)] == ["accepted"]
    # a socket refused at connect replaces nothing: not theirs (4404), signed out (4401)
    path = f"/ws/sessions/{classroom.session.pk}/stream/"
    for user in (classroom.other_learner, None):
        comm, ok, _ = await connect(path, user)
        assert (await comm.receive_json_from(timeout=10))["type"] == "closed"
    await old.send_to(text_data='{"type": "ping"}')
    assert (await old.receive_json_from(timeout=10))["type"] == "pong"

    new, ready = await open_stream(classroom.session, classroom.learner)  # a reopened tab
    assert ready["next_sequence"] == 1
    await assert_replaced(old)
    assert [a["status"] for a in await send_frames(new, [1], empty_frame)] == ["accepted"]
    await new.disconnect()


async def test_one_learner_cannot_take_the_whole_process_budget(
    classroom, empty_frame, nothing_analysed, settings
):
    """Ana opens the stream three times and fills each credit window; Ben, streaming on the
    same server, must still get credit (he got 0: Ana's sockets held all of the budget)."""
    settings.STREAM_MAX_IN_FLIGHT, settings.STREAM_MAX_IN_FLIGHT_TOTAL = 4, 8
    ben_session = await database_sync_to_async(LearnerSessionFactory)(
        learner=classroom.other_learner,
        course=classroom.course,
        consent=await database_sync_to_async(classroom.other_learner.consents.get)(),
    )
    anas = []
    for i in range(3):
        comm, _ = await open_stream(classroom.session, classroom.learner)
        anas.append(comm)
        await send_frames(comm, range(4 * i, 4 * i + 4), empty_frame)
    await asyncio.sleep(0.2)

    ben, ready = await open_stream(ben_session, classroom.other_learner)
    assert ready["credit"] == 4
    statuses = [a["status"] for a in await send_frames(ben, range(4), empty_frame)]
    assert statuses == ["accepted"] * 4
    for old in anas[:2]:
        await assert_replaced(old)
    await anas[2].send_to(text_data='{"type": "ping"}')
    assert (await anas[2].receive_json_from(timeout=10)) == {"type": "pong", "credit": 0}
    await anas[2].disconnect()
    await ben.disconnect()


@pytest.mark.redis
async def test_replacement_goes_through_channels_redis(classroom):
    """The replacement is a message to the session's group: with channels-redis it reaches a
    socket on any server process. (No frame is sent: its bytes would stay in Redis.)"""
    old, _ = await open_stream(classroom.session, classroom.learner)
    new, _ = await open_stream(classroom.session, classroom.learner)
    await assert_replaced(old)
    await new.send_to(text_data='{"type": "ping"}')
    assert (await new.receive_json_from(timeout=10))["type"] == "pong"
    await new.disconnect()
