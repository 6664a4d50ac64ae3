"""Collects accepted stream frames from every socket of this server process into inference
batches: a batch is queued when it holds INFERENCE_BATCH_SIZE frames or its oldest frame has
waited INFERENCE_BATCH_WAIT_MS, whichever comes first. Frames of different learners share a
batch, which is what keeps a GPU (or the CPU's BLAS) busy with large matrix products.

The batcher also keeps the process's stream credit: frames in flight, and credit granted to
sockets and not used yet. Granted credit is reserved, so a frame a client sends within the
credit it was given is never refused for want of room (it was uploaded already); new credit
comes from the process's budget and from what the workers can take (``emotion.admission``),
and sockets that were refused credit get freed credit first, oldest first, pushed to them.

Device frames (cues, and crops) are written by the batcher itself, in bulk. Cues frames wait
for no worker: their credit is not drawn from the workers' room but from the device frames the
batcher may hold unwritten (``STREAM_MAX_PENDING_CUES``), and it is free again once their
batch is written. Crops, once written, are queued for inference like pictures."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref

from asgiref.sync import sync_to_async
from django.conf import settings

from config.db import db_sync_to_async
from emotion import admission
from emotion.services import IncomingFrame, device_frames_accept, readings_enqueue

logger = logging.getLogger(__name__)
#: seconds between tries of a batch the broker refused; after the last, the periodic re-queue
#: of stale pending readings is what picks the frames up
SEND_RETRY_DELAYS = (1.0, 2.0, 4.0)
#: credit a socket has neither used nor been granted anew for this long (a paused camera, a
#: closed laptop) goes back to the others
GRANT_IDLE_S = 5.0
ROOM_CACHE_S = 0.25  # the workers' room is read from Redis at most this often per process
ROOM_STALE_S = 5.0  # a reading older than this (Redis away) is not used


class FrameBatcher:
    def __init__(self, size: int, wait_ms: int):
        self.size, self.wait = size, wait_ms / 1000
        self.ids: list[int] = []
        self.timer: asyncio.TimerHandle | None = None
        self.sends: set[asyncio.Task] = set()
        # frames accepted by this process's sockets and not yet reported analysed: the
        # process-wide admission budget (STREAM_MAX_IN_FLIGHT_TOTAL) that bounds queueing
        self.in_flight_total = 0
        # socket → [credit granted and not used yet, when last granted or used]
        self.grants: dict[object, list] = {}
        self.waiting: dict[object, None] = {}  # sockets refused credit, oldest first
        self._room: tuple[float, int | None, int] = (float("-inf"), None, 0)
        self._reading: asyncio.Future | None = None
        # cues frames waiting to be accepted together: (session, frame, the socket's future)
        self.cues: list[tuple[object, IncomingFrame, asyncio.Future]] = []
        self.cues_writing = 0  # cues frames of the batch being written now
        self.cues_flushing: asyncio.Task | None = None

    # --- credit -------------------------------------------------------------------------------
    def granted(self, sock, now: float) -> int:
        g = self.grants.get(sock)
        return g[0] if g and now - g[1] <= GRANT_IDLE_S else 0

    def granted_total(self, now: float) -> int:
        for sock in [s for s, (_, t) in self.grants.items() if now - t > GRANT_IDLE_S]:
            del self.grants[sock]
        return sum(n for n, _ in self.grants.values())

    def _workers_room(self, now: float) -> int | None:
        """The workers' room as last read (refreshed in a thread: Redis slow or away must not
        stall this event loop, which serves every socket of the process), or None while
        unknown, so the process's own budget bounds credit until it is read."""
        at, room, base = self._room
        if now - at >= ROOM_CACHE_S and self._reading is None:
            self._reading = asyncio.ensure_future(self._read_room())
        if room is None or now - at > ROOM_STALE_S:
            return None
        # frames this process took (or had analysed) since then count as they will in Redis
        return room - (self.in_flight_total - base)

    async def _read_room(self) -> None:
        try:
            base = self.in_flight_total
            room = await asyncio.to_thread(admission.room)
            self._room = (time.monotonic(), room, base)
        finally:
            self._reading = None

    def free(self, now: float) -> int:
        """Credit that may still be granted: the process's budget, and the workers' room."""
        granted = self.granted_total(now)
        free = settings.STREAM_MAX_IN_FLIGHT_TOTAL - self.in_flight_total - granted
        room = self._workers_room(now)
        if room is not None:
            free = min(free, room - granted)
        return max(0, free)

    def grant(self, sock, window_left: int) -> int:
        """Credit of ``sock`` (whose own window has ``window_left`` frames free): what it was
        granted and has not used, topped up from what is free once the sockets waiting longer
        had one each."""
        now = time.monotonic()
        mine = self.granted(sock, now)
        free = self._serve_waiting(self.free(now), now, sock)
        n = max(0, min(window_left, mine + free))
        if n > mine or sock not in self.grants:
            self.grants[sock] = [n, now]
        else:
            self.grants[sock][0] = n
        if n > 0:
            self.waiting.pop(sock, None)
        else:
            self.waiting.setdefault(sock)
        return n

    def _serve_waiting(self, free: int, now: float, asking) -> int:
        for sock in list(self.waiting):
            if free <= 0:
                break
            if sock is asking:
                continue
            del self.waiting[sock]
            n = self.granted(sock, now) + 1
            if n > sock.window_left():  # its own frames fill its window: it asks again
                continue
            self.grants[sock] = [n, now]
            free -= 1
            sock.offer_credit(n)
        return free

    def take(self, sock, window_left: int) -> bool:
        """Whether a frame ``sock`` sent may be accepted: it uses the socket's granted credit;
        without any (sent before its credit was known to be used up, or its grant lapsed),
        it is taken if the process's own budget has room, since it was uploaded already."""
        now = time.monotonic()
        g = self.grants.get(sock)
        if g and g[0] > 0 and now - g[1] <= GRANT_IDLE_S:
            g[0], g[1] = g[0] - 1, now
            return True
        total = settings.STREAM_MAX_IN_FLIGHT_TOTAL
        return window_left > 0 and self.in_flight_total + self.granted_total(now) < total

    def forget(self, sock) -> None:
        """A socket that closed: its unused credit goes back."""
        self.grants.pop(sock, None)
        self.waiting.pop(sock, None)

    # --- cues frames ----------------------------------------------------------------------------
    def cues_pending(self) -> int:
        """Device frames (cues, crops) taken and not yet written (memory held for them)."""
        return len(self.cues) + self.cues_writing

    def cues_credit(self, window_left: int) -> int:
        """Credit for cues frames of a socket whose window has ``window_left`` frames free: the
        window, within what the process may still hold. Not reserved: a cues frame is written
        within one or two batches, so the cap is a memory bound, not a queue to share out."""
        return max(0, min(window_left, settings.STREAM_MAX_PENDING_CUES - self.cues_pending()))

    def take_cues(self, window_left: int) -> bool:
        """Whether a cues frame just received may be accepted (it goes to ``accept_cues`` in
        the same turn of the event loop, so the count it is checked against includes it)."""
        return window_left > 0 and self.cues_pending() < settings.STREAM_MAX_PENDING_CUES

    async def accept_device(self, session, frame: IncomingFrame):
        """``device_frames_accept``'s result for this device frame (cues, or a crop) of
        ``session``: raises what it raised for the session. Frames are accepted together, in
        one transaction and one live broadcast: those that arrive while a batch is being
        written go in the next one, so a frame waits at most for one batch before its own, and
        a quiet server adds no delay. (A crop accepted is then queued for inference by its
        socket, as any frame is.)"""
        future = asyncio.get_running_loop().create_future()
        self.cues.append((session, frame, future))
        if self.cues_flushing is None:
            self.cues_flushing = asyncio.ensure_future(self._flush_cues())
        result = await future
        if isinstance(result, Exception):
            raise result
        return result

    async def _flush_cues(self) -> None:
        batch: list = []
        try:
            await asyncio.sleep(0)  # frames received in this turn of the loop go along
            while self.cues:
                batch, self.cues = self.cues[: self.size * 8], self.cues[self.size * 8 :]
                self.cues_writing = len(batch)
                items = [(s, f) for s, f, _ in batch]
                try:
                    results = await db_sync_to_async(device_frames_accept)(
                        items=items, max_pending=settings.EMOTION_LIMITS["max_pending_per_session"]
                    )
                except Exception as e:  # the database away: every frame of the batch is refused
                    results = [e] * len(batch)
                self.cues_writing = 0
                for (_, _, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:  # cancelled (the server stopping): no socket waits for ever
            for _, _, future in batch + self.cues:
                if not future.done():
                    future.cancel()
            self.cues = []
            self.cues_writing = 0
            self.cues_flushing = None

    async def add(self, reading_id: int) -> None:
        self.ids.append(reading_id)
        if len(self.ids) >= self.size:
            await self._send(self._take())
        elif self.timer is None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(self.wait, self._on_timer)

    def _take(self) -> list[int]:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.ids = self.ids, []
        return batch

    def _on_timer(self) -> None:
        self.timer = None
        batch = self._take()
        if batch:
            task = asyncio.ensure_future(self._send(batch))
            self.sends.add(task)
            task.add_done_callback(self.sends.discard)

    async def _send(self, batch: list[int]) -> None:
        """Queue ``batch``; a failure (the broker away) is logged and retried a few times, never
        raised into the socket that happened to fill the batch (whose frames are not all its
        own) and never lost silently in a timer's task."""
        for delay in (*SEND_RETRY_DELAYS, None):
            try:
                # in a thread: publishing to the broker (or, embedded, running the task) blocks
                await sync_to_async(readings_enqueue, thread_sensitive=False)(reading_ids=batch)
                return
            except Exception:
                if delay is None:
                    logger.exception(
                        "could not queue a batch of %d frame(s) (ids %s…): left to the periodic "
                        "re-queue of stale pending readings",
                        len(batch),
                        batch[:5],
                    )
                    return
                logger.warning("queueing a batch failed; retrying in %.0f s", delay, exc_info=True)
                await asyncio.sleep(delay)

    async def flush(self) -> None:
        batch = self._take()
        if batch:
            await self._send(batch)
        if self.sends:
            await asyncio.gather(*self.sends, return_exceptions=True)


_batchers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def get_batcher() -> FrameBatcher:
    """One batcher per event loop (per server process; per test loop in tests)."""
    loop = asyncio.get_running_loop()
    b = _batchers.get(loop)
    if b is None:
        b = _batchers[loop] = FrameBatcher(
            settings.INFERENCE_BATCH_SIZE, settings.INFERENCE_BATCH_WAIT_MS
        )
    return b


async def flush_batchers() -> None:
    """Queue the frames every batcher of this event loop holds (the server shutting down)."""
    b = _batchers.get(asyncio.get_running_loop())
    if b is not None:
        await b.flush()
