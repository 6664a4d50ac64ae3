"""What a client sent comes back in an error clipped, never whole: a 100 KB field gave a
200 KB error (message and details each quoted it)."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from config.api import MAX_ECHO_CHARS
from tests.emotion.stream_client import StreamClient, connect, frame_message

HUGE = "9" * 100_000


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


@pytest.mark.django_db
def test_a_huge_captured_at_gets_a_short_error(classroom):
    c = APIClient()
    c.force_authenticate(classroom.learner)
    frame = SimpleUploadedFile("a.jpg", b"\xff\xd8\xff not decoded", "image/jpeg")
    r = c.post(
        f"/api/sessions/{classroom.session.pk}/frames/",
        {"frames": [frame], "captured_at": [HUGE]},
        format="multipart",
    )
    assert r.status_code == 400 and len(r.content) < 2 * MAX_ECHO_CHARS + 200, len(r.content)
    error = r.json()["error"]
    assert error["message"].startswith("captured_at: not a date or datetime: '999")
    assert error["message"].endswith("…") and len(error["message"]) == MAX_ECHO_CHARS
    assert all(len(s) <= MAX_ECHO_CHARS for s in strings(r.json()))


@pytest.mark.django_db
def test_a_huge_query_parameter_gets_a_short_error(classroom):
    c = APIClient()
    c.force_authenticate(classroom.instructor)
    r = c.get(f"/api/courses/{classroom.course.pk}/report/", {"from": HUGE})
    assert r.status_code == 400 and len(r.content) < 2 * MAX_ECHO_CHARS + 200, len(r.content)
    assert r.json()["error"]["details"]["from"].endswith("…")


@pytest.mark.django_db(transaction=True)
async def test_socket_acks_and_errors_clip_what_the_client_sent(classroom):
    comm, ok, _ = await connect(f"/ws/sessions/{classroom.session.pk}/stream/", classroom.learner)
    assert ok
    await StreamClient(comm).ready()
    # under the socket's 1 KiB text-message limit, over the echo clip
    long = "9" * 900
    await comm.send_to(text_data=json.dumps({"type": long}))
    error = await comm.receive_json_from()
    assert error["type"] == "error" and "unknown message type '999" in error["reason"]
    assert len(error["reason"]) < MAX_ECHO_CHARS + 30
    # the text-header form: a string sequence is quoted clipped, a list is not quoted
    await comm.send_to(text_data=json.dumps({"type": "frame", "sequence": long}))
    await comm.send_to(bytes_data=b"\xff\xd8\xff")
    ack = await comm.receive_json_from()
    assert ack["code"] == "bad_sequence" and ack["sequence"] == long[: MAX_ECHO_CHARS - 1] + "…"
    await comm.send_to(text_data=json.dumps({"type": "frame", "sequence": [0] * 300}))
    await comm.send_to(bytes_data=b"\xff\xd8\xff")
    ack = await comm.receive_json_from()
    assert ack["code"] == "bad_sequence" and ack["sequence"] is None
    # past the limit the message is refused for its size, and nothing of it comes back
    await comm.send_to(text_data=json.dumps({"type": HUGE}))
    error = await comm.receive_json_from()
    assert error["type"] == "error" and "999" not in error["reason"]
    assert len(error["reason"]) < MAX_ECHO_CHARS
    await comm.send_to(bytes_data=frame_message(1, b"\xff\xd8\xff"))  # still served
    assert (await comm.receive_json_from())["type"] == "ack"
    await comm.disconnect()


def test_bounded_clips_every_string_of_a_nested_value():
    from config.api import bounded

    value = {HUGE: [HUGE, {"k": HUGE}], "n": [1, 2.5, None, True]}
    out = bounded(value)
    assert all(len(s) <= MAX_ECHO_CHARS for s in strings(out))
    assert out["n"] == [1, 2.5, None, True] and len(json.dumps(out)) < 4 * MAX_ECHO_CHARS
