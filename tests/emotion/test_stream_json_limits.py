"""Socket messages with deeply nested or oversized JSON get an error message and the socket
stays open: never close 1011 (Python's json raises RecursionError on deep nesting)."""

import pytest

from config.parsers import MAX_JSON_DEPTH
from emotion.stream_protocol import MAX_HEADER_BYTES
from tests.emotion.stream_client import StreamClient, connect

pytestmark = pytest.mark.django_db(transaction=True)


async def test_nested_text_and_header_json_on_the_stream(classroom, face_frames):
    comm, ok, _ = await connect(f"/ws/sessions/{classroom.session.pk}/stream/", classroom.learner)
    assert ok
    await StreamClient(comm).ready()
    await comm.send_to(text_data="[" * MAX_HEADER_BYTES)  # RecursionError in json.loads
    msg = await comm.receive_json_from(timeout=10)
    assert msg["type"] == "error" and f"deeper than {MAX_JSON_DEPTH}" in msg["reason"], msg
    await comm.send_to(text_data='{"type": "frame", "x": "' + "a" * MAX_HEADER_BYTES + '"}')
    msg = await comm.receive_json_from(timeout=10)
    assert msg["type"] == "error" and "exceeds the limit" in msg["reason"], msg
    header = b"[" * MAX_HEADER_BYTES
    await comm.send_to(bytes_data=len(header).to_bytes(4, "big") + header + face_frames[0])
    ack = await comm.receive_json_from(timeout=10)
    assert (ack["status"], ack["code"]) == ("rejected", "bad_header"), ack
    assert "deeper than" in ack["reason"]
    await comm.send_to(text_data='{"type": "ping"}')  # the socket is still open
    assert (await comm.receive_json_from(timeout=10))["type"] == "pong"
    await comm.disconnect()


async def test_nested_json_on_the_notifications_socket(classroom):
    comm, ok, _ = await connect("/ws/notifications/", classroom.learner)
    assert ok
    for text in ("[" * 5000 + "]" * 5000, "not json", '{"type": "ping"}'):
        await comm.send_to(text_data=text)
        msg = await comm.receive_json_from(timeout=10)
        assert msg == {"type": "error", "reason": "this socket takes no messages"}
    assert await comm.receive_nothing(timeout=0.2)  # open, and quiet
    await comm.disconnect()
