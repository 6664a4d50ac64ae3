"""SIGTERM under load: the server stops within a bounded time and leaves no accepted frame
pending. Frames waiting in a partial batch (for more frames, or for the batch's wait) are
queued at shutdown; before, daphne could hang on a thread still serving a request and the
partial batch waited, pending, for a re-queue."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest
from websockets.asyncio.client import connect as ws_connect

from emotion.models import Reading
from tests.emotion.stream_client import frame_message
from tests.emotion.test_socket_refusals import _login_cookie
from tests.servers import server_process

pytestmark = pytest.mark.django_db(transaction=True)


def _hammer(base: str, stop: threading.Event) -> None:
    """HTTP load while the server shuts down: anonymous API calls and pages, back to back."""
    while not stop.is_set():
        for path in ("/api/courses/", "/accounts/login/", "/healthz"):
            with contextlib.suppress(urllib.error.URLError, OSError):
                urllib.request.urlopen(base + path, timeout=5).read()


async def _stream(base: str, session_id: int, cookie: str, frames: list[bytes]) -> int:
    url = base.replace("http://", "ws://") + f"/ws/sessions/{session_id}/stream/"
    headers = {"Origin": base, "Cookie": cookie}
    accepted = 0
    async with ws_connect(url, additional_headers=headers, open_timeout=10) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        for i, data in enumerate(frames):
            await ws.send(frame_message(i, data))
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if msg["type"] == "ack":
                    accepted += msg["status"] == "accepted"
                    break
    return accepted


def test_sigterm_under_load_exits_quickly_and_queues_the_partial_batch(
    classroom, face_frames, tmp_path
):
    # a batch of 4: the first four frames are analysed at once (the model is then warm); the
    # next three wait for a fourth, or a minute, when the server is told to stop
    env = {"INFERENCE_BATCH_SIZE": "4", "INFERENCE_BATCH_WAIT_MS": "60000"}
    with server_process(tmp_path, **env) as (base, proc):
        cookie = _login_cookie(base, classroom.learner.username)
        accepted = asyncio.run(_stream(base, classroom.session.pk, cookie, face_frames[:7]))
        assert accepted == 7
        pending = Reading.objects.filter(session=classroom.session, analysed_at__isnull=True)
        deadline = time.monotonic() + 60
        while pending.count() != 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pending.count() == 3  # the partial batch

        stop = threading.Event()
        load = [threading.Thread(target=_hammer, args=(base, stop)) for _ in range(4)]
        for t in load:
            t.start()
        time.sleep(1)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        took = time.monotonic() - t0
        stop.set()
        for t in load:
            t.join(10)
    print(f"SIGTERM to exit: {took:.2f} s")
    assert took < 10, f"the server took {took:.1f} s to stop"
    assert proc.returncode == 0
    assert pending.count() == 0
    analysed = Reading.objects.filter(session=classroom.session, analysed_at__isnull=False)
    assert analysed.count() == 7
