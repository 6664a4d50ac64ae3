"""Refusals and frame limits as a real client sees them, through the real server.

``WebsocketCommunicator`` talks to the ASGI app directly, so it reports a close-before-accept
as a close code; the server turns that into an HTTP 403 handshake rejection and a browser only
ever sees 1006. These tests connect with the ``websockets`` client over TCP to the same server
(``python -m config.serve``) the product runs (the browser tests' server fixture).
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

import pytest
import websockets
from channels.db import database_sync_to_async
from django.utils import timezone
from websockets.asyncio.client import connect as ws_connect

from config.serve import WS_MAX_MESSAGE_BYTES, uvicorn_config
from emotion.stream_protocol import (
    FRAME_PREFIX_BYTES,
    MAX_HEADER_BYTES,
    STREAM_FRAME_BYTES_CAP,
)
from tests.browser.conftest import asgi_server  # noqa: F401  (the live server fixture)
from tests.emotion.stream_client import frame_message
from tests.factories import PASSWORD
from tutoring.models import Consent, LearnerSession

pytestmark = pytest.mark.django_db(transaction=True)


def _login_cookie(base: str, username: str) -> str:
    """Sign in through the server's own login form; the session cookie it sets."""
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    html = opener.open(f"{base}/accounts/login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    body = urllib.parse.urlencode(
        {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token}
    ).encode()
    opener.open(
        urllib.request.Request(
            f"{base}/accounts/login/", data=body, headers={"Referer": f"{base}/accounts/login/"}
        ),
        timeout=10,
    )
    cookies = {c.name: c.value for c in jar}
    assert "sessionid" in cookies, f"{username} could not sign in"
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


async def _open(base: str, path: str, user=None):
    headers = {"Origin": base}
    if user is not None:
        headers["Cookie"] = await asyncio.to_thread(_login_cookie, base, user.username)
    url = base.replace("http://", "ws://") + path
    return await ws_connect(url, additional_headers=headers, max_size=2**24, open_timeout=10)


async def _refusal(base: str, path: str, user=None) -> tuple[list[dict], int, str]:
    """Connect, read until the server closes; (messages, close code, close reason)."""
    return await until_closed(await _open(base, path, user))


async def until_closed(ws) -> tuple[list[dict], int, str]:
    """Read until the server closes ``ws``; (messages, close code, close reason)."""
    msgs = []
    try:
        while True:
            msgs.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    except websockets.ConnectionClosed as e:
        assert e.rcvd is not None, f"no close frame from the server ({e})"
        return msgs, e.rcvd.code, e.rcvd.reason


async def test_ended_session_refusal_reaches_a_real_client(asgi_server, classroom):  # noqa: F811
    await database_sync_to_async(LearnerSession.objects.filter(pk=classroom.session.pk).update)(
        status=LearnerSession.Status.ENDED
    )
    msgs, code, _ = await _refusal(
        asgi_server, f"/ws/sessions/{classroom.session.pk}/stream/", classroom.learner
    )
    assert code == 4409
    assert msgs == [{"type": "closed", "code": 4409, "reason": msgs[0]["reason"]}]
    assert "ended" in msgs[0]["reason"]


async def test_revoked_consent_and_strangers_get_4403_not_1006(asgi_server, classroom):  # noqa: F811
    await database_sync_to_async(Consent.objects.filter(pk=classroom.session.consent_id).update)(
        revoked_at=timezone.now()
    )
    stream = f"/ws/sessions/{classroom.session.pk}/stream/"
    msgs, code, _ = await _refusal(asgi_server, stream, classroom.learner)
    assert code == 4403 and msgs[0]["code"] == 4403 and "consent" in msgs[0]["reason"]

    live = f"/ws/courses/{classroom.course.pk}/live/"
    msgs, code, _ = await _refusal(asgi_server, live, classroom.other_instructor)
    assert code == 4403
    assert msgs == [{"type": "closed", "code": 4403, "reason": msgs[0]["reason"]}]

    msgs, code, _ = await _refusal(asgi_server, stream, classroom.other_learner)
    assert code == 4404 and msgs[0]["type"] == "closed"
    msgs, code, _ = await _refusal(asgi_server, live)  # signed out
    assert code == 4401 and "sign in" in msgs[0]["reason"]


def test_the_frame_cap_matches_the_servers_message_size():
    """If the server's WebSocket message limit changes, the cap (and the ready message) must
    follow."""
    assert uvicorn_config("127.0.0.1", 8000).ws_max_size == WS_MAX_MESSAGE_BYTES
    assert STREAM_FRAME_BYTES_CAP + FRAME_PREFIX_BYTES + MAX_HEADER_BYTES == WS_MAX_MESSAGE_BYTES


async def test_frame_size_limit_through_the_server(asgi_server, classroom):  # noqa: F811
    ws = await _open(asgi_server, f"/ws/sessions/{classroom.session.pk}/stream/", classroom.learner)
    ready = json.loads(await ws.recv())
    limit = ready["max_frame_bytes"]
    assert limit == STREAM_FRAME_BYTES_CAP  # the configured 2 MiB does not fit in one message
    jpeg_start = b"\xff\xd8\xff\xe0"

    # one byte over the advertised limit: a per-frame rejection with a reason, socket open
    await ws.send(frame_message(0, jpeg_start + b"\0" * (limit + 1 - len(jpeg_start))))
    ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert ack["status"] == "rejected" and ack["code"] == "too_large", ack
    assert str(limit) in ack["reason"]
    # exactly the limit, with a header as large as allowed, still fits in one WebSocket
    # message: it reaches the image checks (and fails there: it is not a real JPEG)
    header = json.dumps({"sequence": 1, "pad": ""}).encode()
    header = json.dumps({"sequence": 1, "pad": "x" * (MAX_HEADER_BYTES - len(header))}).encode()
    assert len(header) == MAX_HEADER_BYTES
    body = jpeg_start + b"\0" * (limit - len(jpeg_start))
    await ws.send(len(header).to_bytes(4, "big") + header + body)
    ack = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert ack["status"] == "rejected" and ack["code"] == "undecodable", ack
    await ws.send(json.dumps({"type": "ping"}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "pong"

    # what the old advertised 2 MiB allowed: the server drops the whole socket, with no ack
    # (at best a close frame with 1009), so it had to be capped above
    await ws.send(frame_message(2, jpeg_start + b"\0" * WS_MAX_MESSAGE_BYTES))
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is None or closed.value.rcvd.code == 1009


# --- the pages' side, in headless Chromium ---------------------------------------------------


@pytest.fixture
def chromium(monkeypatch):
    """A Chromium with a fake camera, for one test: Playwright's sync API runs an event loop in
    this thread, so it must be gone before the async tests above run again."""
    from pathlib import Path

    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import BASE_ARGS, CHROMIUM
    from tests.services import require_service

    require_service("Chromium", Path(CHROMIUM).exists(), CHROMIUM)
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # ORM calls beside that loop
    with sync_playwright() as p:
        args = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BASE_ARGS + args)
        yield b
        b.close()


@pytest.mark.browser
def test_recorder_shows_the_servers_reason_and_stops(chromium, asgi_server, classroom):  # noqa: F811
    from playwright.sync_api import expect

    from tests.browser.conftest import login

    Consent.objects.filter(pk=classroom.session.consent_id).update(revoked_at=timezone.now())
    page = chromium.new_context().new_page()
    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    login(page, asgi_server, "ana", PASSWORD)
    page.goto(f"{asgi_server}/learn/sessions/{classroom.session.pk}/")
    page.get_by_role("button", name="Start", exact=True).click()
    status = page.locator("#status")
    expect(status).to_have_attribute("data-state", "error", timeout=15_000)
    expect(status).to_contain_text("Consent for this course was revoked.")
    page.wait_for_timeout(2000)  # no reconnecting after a refusal
    expect(status).to_have_attribute("data-state", "error")
    assert len(sockets) == 1
    assert page.evaluate("window.affectRecorder.stream") is None  # the camera is off


def _run_timers_until(page, done_js: str, rounds: int = 40) -> None:
    """Fast-forward the page's (fake) clock through the reconnect back-off."""
    for _ in range(rounds):
        if page.evaluate(done_js):
            return
        page.clock.run_for(10_000)
        page.wait_for_timeout(150)  # real time for the socket attempt the timer started
    raise AssertionError(f"never: {done_js}")


@pytest.mark.browser
def test_pages_stop_reconnecting_after_repeated_failures(chromium, asgi_server, classroom):  # noqa: F811
    from playwright.sync_api import expect

    from tests.browser.conftest import login

    def unreachable(attempts):
        def handler(ws):  # never reaches the server: every attempt fails before "ready"
            attempts.append(ws.url)
            ws.close(code=1011, reason="unreachable")

        return handler

    # the learner's recorder
    page = chromium.new_context().new_page()
    login(page, asgi_server, "ana", PASSWORD)
    attempts = []
    page.route_web_socket(re.compile(r".*/ws/sessions/"), unreachable(attempts))
    page.clock.install()
    page.goto(f"{asgi_server}/learn/sessions/{classroom.session.pk}/")
    page.get_by_role("button", name="Start", exact=True).click()
    status = page.locator("#status")
    _run_timers_until(page, "document.getElementById('status').dataset.state === 'disconnected'")
    assert len(attempts) == 8
    expect(status).to_contain_text("Could not reach the server")
    # then only a slow retry, every 30 s (one, not the back-off's eight, in the next 40 s)
    page.clock.run_for(40_000)
    page.wait_for_timeout(300)
    assert len(attempts) == 9
    expect(status).to_have_attribute("data-state", "disconnected")
    page.get_by_role("button", name="Retry").click()
    expect(status).to_have_attribute("data-state", "reconnecting")
    assert len(attempts) == 10
    # back online: an attempt at once, not at the next slow retry
    _run_timers_until(page, "document.getElementById('status').dataset.state === 'disconnected'")
    n = len(attempts)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    page.wait_for_timeout(300)
    assert len(attempts) == n + 1

    # the instructor's live view
    page = chromium.new_context().new_page()
    login(page, asgi_server, "teacher", PASSWORD)
    attempts = []
    page.route_web_socket(re.compile(r".*/ws/courses/"), unreachable(attempts))
    page.clock.install()
    page.goto(f"{asgi_server}/teach/courses/{classroom.course.pk}/live/")
    conn = page.locator("#conn")
    _run_timers_until(page, "document.getElementById('conn').textContent.startsWith('Disconn')")
    assert len(attempts) == 8
    expect(conn).to_have_attribute("data-state", "error")
    conn.get_by_role("button", name="Retry").click()
    expect(conn).to_have_attribute("data-state", "reconnecting")
    assert len(attempts) == 9
    _run_timers_until(page, "document.getElementById('conn').textContent.startsWith('Disconn')")
    n = len(attempts)
    page.clock.run_for(31_000)  # the slow retry
    page.wait_for_timeout(300)
    assert len(attempts) == n + 1
    page.evaluate("window.dispatchEvent(new Event('online'))")
    page.wait_for_timeout(300)
    assert len(attempts) == n + 2
