"""A socket's permission is checked again while it lives, not only at connect.

An instructor removed from the course, a deactivated account or a browser session signed out
elsewhere kept getting the learners' names, engagement and emotion for as long as the socket
lived (the server keeps one up to a day); a deactivated learner could keep streaming. Now, at the
first message either way after ``RECHECK_SECONDS``, the socket is closed with the code the
connect check would have refused it with (4401 signed out, 4403 not the course's instructor),
told why, and sent nothing more.

These tests talk to the product's ASGI app (``config.asgi``, with its cookie session auth)
through ``WebsocketCommunicator``, and push group messages as the worker does.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request

import pytest
import websockets
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client
from websockets.asyncio.client import connect as ws_connect

from config.asgi import application
from config.broadcast import course_group
from emotion import consumers, socket_auth
from emotion.live import broadcast_after_batch
from emotion.models import Reading
from tests.browser.conftest import asgi_server  # noqa: F401  (the live server fixture)
from tests.emotion.stream_client import StreamClient, frame_message
from tests.emotion.test_socket_refusals import _login_cookie
from tests.factories import ReadingFactory, api_token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def recheck_every_message(monkeypatch):
    """Check on every message, so a test need not wait out the interval. (``raising=False``:
    without the check there is no constant, and the test fails on its assertions.)"""
    monkeypatch.setattr(socket_auth, "RECHECK_SECONDS", 0.0, raising=False)


def _signed_in(user) -> str:
    c = Client()
    c.force_login(user)
    return c.cookies["sessionid"].value


async def open_socket(path: str, user) -> tuple[WebsocketCommunicator, str]:
    """A socket signed in with a browser session cookie; (socket, session key)."""
    key = await database_sync_to_async(_signed_in)(user)
    headers = [
        (b"origin", b"http://localhost"),
        (b"host", b"localhost"),
        (b"cookie", f"sessionid={key}".encode()),
    ]
    comm = WebsocketCommunicator(application, path, headers=headers)
    ok, _ = await comm.connect(timeout=10)
    assert ok
    return comm, key


async def live_view(classroom) -> tuple[WebsocketCommunicator, str]:
    comm, key = await open_socket(f"/ws/courses/{classroom.course.pk}/live/", classroom.instructor)
    snap = await comm.receive_json_from(timeout=10)
    assert snap["type"] == "snapshot" and [x["learner_name"] for x in snap["learners"]] == [
        "ana",
        "ben",
    ]
    return comm, key


_sequence = iter(range(10_000))


@database_sync_to_async
def worker_broadcast(classroom) -> None:
    """What the worker sends after analysing a batch: the session's summary to
    ``session-<id>`` and the course aggregate (learner names, engagement, emotion) to
    ``course-<id>``."""
    reading = ReadingFactory(session=classroom.session, sequence=next(_sequence))
    broadcast_after_batch([reading])


async def session_started(classroom) -> None:
    await get_channel_layer().group_send(
        course_group(classroom.course.pk),
        {
            "type": "session.started",
            "payload": {"session": 999, "learner": classroom.learner.pk, "learner_name": "ana"},
        },
    )


async def closed_and_nothing_else(comm: WebsocketCommunicator, code: int) -> str:
    """The next messages are the refusal and the close, with nothing before or after them."""
    msg = await comm.receive_json_from(timeout=10)
    assert msg["type"] == "closed" and msg["code"] == code, msg
    assert await comm.receive_output(timeout=10) == {"type": "websocket.close", "code": code}
    assert await comm.receive_nothing(timeout=0.3)
    return msg["reason"]


async def test_instructor_removed_from_the_course_gets_4403_and_no_more_data(
    classroom, recheck_every_message
):
    live, _ = await live_view(classroom)
    await worker_broadcast(classroom)
    summary = await live.receive_json_from(timeout=10)  # still an instructor: it flows
    assert summary["type"] == "summary" and summary["sessions"][0]["learner_name"] == "ana"

    await database_sync_to_async(classroom.course.instructors.remove)(classroom.instructor)
    await worker_broadcast(classroom)
    reason = await closed_and_nothing_else(live, 4403)
    assert "instructors" in reason
    await worker_broadcast(classroom)  # the socket left the group: nothing reaches it
    await session_started(classroom)
    assert await live.receive_nothing(timeout=0.5)


async def test_deactivated_instructor_gets_4401_and_no_more_data(classroom, recheck_every_message):
    live, _ = await live_view(classroom)
    classroom.instructor.is_active = False
    await database_sync_to_async(classroom.instructor.save)(update_fields=["is_active"])
    await session_started(classroom)
    reason = await closed_and_nothing_else(live, 4401)
    assert "signed in" in reason and "deactivated" in reason
    await worker_broadcast(classroom)
    assert await live.receive_nothing(timeout=0.5)


async def test_instructor_signed_out_elsewhere_gets_4401(classroom, recheck_every_message):
    """Signing out (in another tab, or an administrator flushing the session) deletes the
    session the socket was opened with: its messages stop there."""
    live, key = await live_view(classroom)
    other, _ = await live_view(classroom)  # the same instructor signed in on another browser
    await database_sync_to_async(SessionStore(key).flush)()  # what logout() does
    await worker_broadcast(classroom)
    await closed_and_nothing_else(live, 4401)
    # the other browser's sign-in still holds: its socket goes on
    assert (await other.receive_json_from(timeout=10))["type"] == "summary"
    await other.disconnect()


async def test_password_change_closes_the_live_view(classroom, recheck_every_message):
    """As on HTTP, a password change signs the account's other sessions out."""
    live, _ = await live_view(classroom)

    def change_password():
        classroom.instructor.set_password("a-new-password-42")
        classroom.instructor.save()

    await database_sync_to_async(change_password)()
    await worker_broadcast(classroom)
    await closed_and_nothing_else(live, 4401)


async def test_the_check_runs_at_most_every_recheck_seconds(classroom, monkeypatch):
    """Between checks messages flow without a database round trip; the first message after
    the interval is checked."""
    monkeypatch.setattr(socket_auth, "RECHECK_SECONDS", 1.0, raising=False)
    checks = []
    real = consumers.CourseLiveConsumer.refusals_now

    def counted(sockets, users):
        checks.append(len(sockets))
        return real(sockets, users)

    monkeypatch.setattr(consumers.CourseLiveConsumer, "refusals_now", counted)
    live, _ = await live_view(classroom)
    for _ in range(3):
        await session_started(classroom)
        assert (await live.receive_json_from(timeout=10))["type"] == "session_started"
    assert checks == []
    await database_sync_to_async(classroom.course.instructors.remove)(classroom.instructor)
    await asyncio.sleep(1.1)
    await session_started(classroom)
    await closed_and_nothing_else(live, 4403)
    assert checks == [1]


async def _stream(classroom) -> tuple[WebsocketCommunicator, StreamClient]:
    comm, _ = await open_socket(f"/ws/sessions/{classroom.session.pk}/stream/", classroom.learner)
    client = StreamClient(comm)
    await client.ready()
    return comm, client


async def _deactivate(user) -> None:
    user.is_active = False
    await database_sync_to_async(user.save)(update_fields=["is_active"])


async def test_deactivated_learner_gets_no_summary_and_4401(classroom, recheck_every_message):
    comm, _ = await _stream(classroom)
    await worker_broadcast(classroom)
    assert (await comm.receive_json_from(timeout=10))["type"] == "summary"
    await _deactivate(classroom.learner)
    await worker_broadcast(classroom)
    reason = await closed_and_nothing_else(comm, 4401)
    assert "sign in again to stream" in reason


async def test_deactivated_learner_cannot_go_on_streaming(
    classroom, recheck_every_message, empty_frame, settings
):
    """Consent was re-checked on every frame already, the account was not."""
    settings.INFERENCE_BATCH_WAIT_MS = 60_000  # no summary comes meanwhile
    comm, _ = await _stream(classroom)
    await comm.send_to(bytes_data=frame_message(0, empty_frame))
    assert (await comm.receive_json_from(timeout=10))["status"] == "accepted"
    await _deactivate(classroom.learner)
    await comm.send_to(bytes_data=frame_message(1, empty_frame))
    await closed_and_nothing_else(comm, 4401)
    stored = await database_sync_to_async(
        lambda: list(Reading.objects.filter(session=classroom.session).values_list("sequence"))
    )()
    assert stored == [(0,)]


# --- through the real server and the real sign-out --------------------------------------


async def test_signing_out_closes_the_live_view_through_the_server(asgi_server, classroom):  # noqa: F811
    """The instructor signs in and opens the live view in a browser, then signs out (the
    product's logout, on the same server). The next message for the course (a learner ending
    their session, after the check interval) closes the socket with 4401 instead."""
    cookie = await asyncio.to_thread(_login_cookie, asgi_server, classroom.instructor.username)
    ws = await ws_connect(
        asgi_server.replace("http://", "ws://") + f"/ws/courses/{classroom.course.pk}/live/",
        additional_headers={"Origin": asgi_server, "Cookie": cookie},
        open_timeout=10,
    )
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "snapshot"

    cookies = dict(c.split("=", 1) for c in cookie.split("; "))

    def sign_out():
        csrf = cookies["csrftoken"]
        req = urllib.request.Request(
            f"{asgi_server}/accounts/logout/",
            data=urllib.parse.urlencode({"csrfmiddlewaretoken": csrf}).encode(),
            headers={"Cookie": cookie, "Referer": f"{asgi_server}/"},
        )
        urllib.request.urlopen(req, timeout=10)

    await asyncio.to_thread(sign_out)
    signed_in = SessionStore(cookies["sessionid"]).exists
    assert not await database_sync_to_async(signed_in)(cookies["sessionid"])
    await asyncio.sleep(getattr(socket_auth, "RECHECK_SECONDS", 5.0) + 0.5)
    token = await database_sync_to_async(api_token)(classroom.learner)

    def learner_ends_the_session():
        req = urllib.request.Request(
            f"{asgi_server}/api/sessions/{classroom.session.pk}/end/",
            data=b"",
            headers={"Authorization": f"Token {token}"},
            method="POST",
        )
        return urllib.request.urlopen(req, timeout=10).status

    assert await asyncio.to_thread(learner_ends_the_session) == 200
    msgs = []
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            msgs.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert [m["type"] for m in msgs] == ["closed"] and msgs[0]["code"] == 4401
