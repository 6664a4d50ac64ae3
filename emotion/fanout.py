"""Session summaries from the inference workers to the learners' stream sockets: one channel
layer message per batch, not one per session.

A batch touches tens of sessions; a message to each session's group cost the worker about
three Redis round trips apiece, half of a crop batch's time. So each server process that holds
stream sockets keeps one channel in the group ``SUMMARIES_GROUP``, reads the batches' messages
there and hands each summary to its own sockets of that session (other processes' sessions
are skipped). Every process gets every batch's message: a few KB per batch for each of a
handful of web processes, against a round trip per session for the worker.

A socket is added before it is accepted (:meth:`SummaryFanout.add`), as it joins its session's
group, so no summary of a frame it sent can go before it listens. The process reads the group
from its first stream socket on, for as long as it lives."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import defaultdict

from config.broadcast import group_join

logger = logging.getLogger(__name__)

SUMMARIES_GROUP = "stream-summaries"
SUMMARIES_EVENT = "sessions.summary"
READ_RETRY_S = 1.0  # the channel layer away: read again after this long


def summaries_message(payloads: list[dict]) -> tuple[str, str, dict]:
    """The one ``(group, event type, payload)`` message carrying a batch's session summaries
    (each with its ``session`` id), for ``config.broadcast.group_send_many``."""
    return SUMMARIES_GROUP, SUMMARIES_EVENT, {"sessions": payloads}


class SummaryFanout:
    """One server process's reader of ``SUMMARIES_GROUP`` and its stream sockets by session.
    A socket is anything with ``async session_summary(event)``."""

    def __init__(self, layer):
        self.layer = layer
        # weak: a consumer whose application crashed, never told to leave, is not kept
        self.sockets: dict[int, weakref.WeakSet] = defaultdict(weakref.WeakSet)
        self.channel: str | None = None
        self.reader: asyncio.Task | None = None
        self.staying: asyncio.Task | None = None
        self.starting = asyncio.Lock()
        # each socket's last delivery: the next one waits for it, so a socket's summaries go
        # out in the order they came while a slow socket holds up no other
        self.tails: dict[object, asyncio.Task] = {}

    async def add(self, session_id: int, sock) -> None:
        """Deliver ``session_id``'s summaries to ``sock`` from now on; raises what the channel
        layer raises when it is away (the caller refuses the socket)."""
        async with self.starting:
            if self.reader is None:
                self.channel = await self.layer.new_channel()
                self.staying = await group_join(self.layer, SUMMARIES_GROUP, self.channel)
                self.reader = asyncio.ensure_future(self._read())
        self.sockets[session_id].add(sock)

    def discard(self, session_id: int, sock) -> None:
        """Stop delivering to ``sock`` (sync: a consumer that crashed calls it on its way
        out). The process stays in the group, reading, once its last socket is gone: a reader
        torn down under a receive on the shared layer could leave the layer's receive lock
        held (seen at a test loop's shutdown), and an idle member costs a message a batch."""
        socks = self.sockets.get(session_id)
        if socks is not None:
            socks.discard(sock)
        # sessions whose sockets all left, or went with their crashed consumers
        for gone in [k for k, socks in self.sockets.items() if not socks]:
            del self.sockets[gone]

    async def _read(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("reading %s failed; again in %.0f s", SUMMARIES_GROUP, READ_RETRY_S)
                await asyncio.sleep(READ_RETRY_S)
                continue
            if message.get("type") == SUMMARIES_EVENT:
                self.deliver(message["payload"]["sessions"])

    def deliver(self, payloads: list[dict]) -> None:
        """Hand each summary to this process's sockets of its session."""
        for payload in payloads:
            for sock in list(self.sockets.get(payload.get("session"), ())):
                self._after(sock, self._one(sock, payload, self.tails.get(sock)))

    def _after(self, sock, coro) -> None:
        task = asyncio.ensure_future(coro)
        self.tails[sock] = task

        def done(t: asyncio.Task) -> None:
            if self.tails.get(sock) is t:
                del self.tails[sock]

        task.add_done_callback(done)

    @staticmethod
    async def _one(sock, payload: dict, before: asyncio.Task | None) -> None:
        if before is not None:
            await asyncio.gather(before, return_exceptions=True)
        try:
            await sock.session_summary({"payload": payload})
        except Exception:  # that socket's failure, never the reader's
            logger.exception("summary of session %s not delivered", payload.get("session"))


_fanouts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def get_fanout(layer) -> SummaryFanout:
    """One per event loop (per server process; per test loop in tests)."""
    loop = asyncio.get_running_loop()
    f = _fanouts.get(loop)
    if f is None or f.layer is not layer:
        f = _fanouts[loop] = SummaryFanout(layer)
    return f
