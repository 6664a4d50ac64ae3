"""Sequence numbers the server hands out when a frame comes without one (README: optional)."""

from __future__ import annotations

import json
import threading

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from emotion.models import Reading
from tests.emotion.stream_client import StreamClient, connect
from tests.emotion.test_upload import upload

pytestmark = pytest.mark.django_db(transaction=True)


def _sequences(session) -> list[int]:
    return sorted(Reading.objects.filter(session=session).values_list("sequence", flat=True))


def test_two_uploads_without_sequence_give_two_readings(classroom, face_frames):
    first = upload(classroom.learner, classroom.session, [("a.jpg", face_frames[0])])
    second = upload(classroom.learner, classroom.session, [("b.jpg", face_frames[1])])
    assert (first.status_code, first.json()["accepted"]) == (202, [0])
    assert (second.status_code, second.json()["accepted"]) == (202, [1])
    assert _sequences(classroom.session) == [0, 1]


def test_concurrent_uploads_without_sequence_each_get_their_own(classroom, face_frames):
    n, barrier, results = 6, threading.Barrier(6), []

    def one(i):
        try:
            barrier.wait(10)
            r = upload(classroom.learner, classroom.session, [(f"{i}.jpg", face_frames[i])])
            results.append((r.status_code, r.json()["accepted"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(s for s, _ in results) == [202] * n, results
    assert sorted(seq for _, acc in results for seq in acc) == list(range(n))
    assert _sequences(classroom.session) == list(range(n))


def _headerless(data: bytes) -> bytes:
    header = json.dumps({}).encode()
    return len(header).to_bytes(4, "big") + header + data


async def _ack(comm) -> dict:
    while (msg := await comm.receive_json_from(timeout=10))["type"] != "ack":
        pass  # summaries of frames analysed meanwhile
    return msg


async def test_stream_frames_without_sequence_give_readings(classroom, face_frames):
    """Over the socket, and interleaved with REST uploads of the same session."""
    path = f"/ws/sessions/{classroom.session.pk}/stream/"
    comm, ok, _ = await connect(path, classroom.learner)
    assert ok
    await StreamClient(comm).ready()
    acks = []
    for i in range(2):
        await comm.send_to(bytes_data=_headerless(face_frames[i]))
        acks.append(await _ack(comm))
    rest = await database_sync_to_async(upload)(
        classroom.learner, classroom.session, [("c.jpg", face_frames[2])]
    )
    await comm.send_to(text_data='{"type": "frame"}')
    await comm.send_to(bytes_data=face_frames[3])
    acks.append(await _ack(comm))
    await comm.disconnect()
    assert [(a["status"], a["sequence"]) for a in acks] == [
        ("accepted", 0),
        ("accepted", 1),
        ("accepted", 3),
    ], acks
    assert rest.json()["accepted"] == [2]
    assert await database_sync_to_async(_sequences)(classroom.session) == [0, 1, 2, 3]
