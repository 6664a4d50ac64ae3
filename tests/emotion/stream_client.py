"""A test client for the learner stream socket that behaves like the browser: it honours the
server's credit window and waits for credit instead of flooding."""

from __future__ import annotations

import asyncio
import json

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from config.asgi import application


def _headers(user):
    c = Client()
    c.force_login(user)
    return [
        (b"origin", b"http://localhost"),
        (b"host", b"localhost"),
        (b"cookie", f"sessionid={c.cookies['sessionid'].value}".encode()),
    ]


async def connect(
    path: str, user=None, timeout: float = 10
) -> tuple[WebsocketCommunicator, bool, int]:
    headers = (
        (await database_sync_to_async(_headers)(user))
        if user
        else [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    )
    comm = WebsocketCommunicator(application, path, headers=headers)
    ok, code = await comm.connect(timeout=timeout)
    return comm, ok, code


def frame_message(sequence: int, data: bytes, captured_at: str | None = None) -> bytes:
    header = {"sequence": sequence}
    if captured_at:
        header["captured_at"] = captured_at
    h = json.dumps(header).encode()
    return len(h).to_bytes(4, "big") + h + data


class StreamClient:
    def __init__(self, comm: WebsocketCommunicator):
        self.comm = comm
        self.acks: list[dict] = []
        self.summaries: list[dict] = []
        self.credit = 0
        self.other: list[dict] = []

    async def ready(self, timeout: float = 10) -> dict:
        msg = await self.comm.receive_json_from(timeout=timeout)
        assert msg["type"] == "ready", msg
        self.credit = msg["credit"]
        return msg

    def _take(self, msg: dict) -> None:
        if "credit" in msg:
            self.credit = msg["credit"]
        {"ack": self.acks, "summary": self.summaries}.get(msg["type"], self.other).append(msg)

    async def pump(self, timeout: float) -> bool:
        msg = await receive_or_none(self.comm, timeout)
        if msg is None:
            return False
        self._take(msg)
        return True

    async def send_all(self, frames: list[bytes], start: int = 0, timeout: float = 120) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for i, data in enumerate(frames):
            while self.credit <= 0:
                assert loop.time() < deadline, "no credit came back"
                await self.pump(timeout=1)
            await self.comm.send_to(bytes_data=frame_message(start + i, data))
            n = len(self.acks)
            while len(self.acks) == n:
                assert loop.time() < deadline, "no ack"
                await self.pump(timeout=5)


async def receive_or_none(comm: WebsocketCommunicator, timeout: float) -> dict | None:
    """Next JSON message, or None after ``timeout``. (A timeout inside ``receive_from``
    would cancel the application under test, so wait with ``receive_nothing`` first.)"""
    if await comm.receive_nothing(timeout=timeout, interval=0.01):
        return None
    return await comm.receive_json_from(timeout=10)


async def drain(comm: WebsocketCommunicator, seconds: float) -> list[dict]:
    out = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        msg = await receive_or_none(comm, left)
        if msg is None:
            break
        out.append(msg)
    return out
