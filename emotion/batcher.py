"""Collects accepted stream frames from every socket of this server process into inference
batches: a batch is queued when it holds INFERENCE_BATCH_SIZE frames or its oldest frame has
waited INFERENCE_BATCH_WAIT_MS, whichever comes first. Frames of different learners share a
batch, which is what keeps a GPU (or the CPU's BLAS) busy with large matrix products."""

from __future__ import annotations

import asyncio
import logging
import weakref

from asgiref.sync import sync_to_async
from django.conf import settings

from emotion.services import readings_enqueue

logger = logging.getLogger(__name__)
#: seconds between tries of a batch the broker refused; after the last, the periodic re-queue
#: of stale pending readings is what picks the frames up
SEND_RETRY_DELAYS = (1.0, 2.0, 4.0)


class FrameBatcher:
    def __init__(self, size: int, wait_ms: int):
        self.size, self.wait = size, wait_ms / 1000
        self.ids: list[int] = []
        self.timer: asyncio.TimerHandle | None = None
        self.sends: set[asyncio.Task] = set()
        # frames accepted by this process's sockets and not yet reported analysed: the
        # process-wide admission budget (STREAM_MAX_IN_FLIGHT_TOTAL) that bounds queueing
        self.in_flight_total = 0

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
