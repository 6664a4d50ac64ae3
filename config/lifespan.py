"""The server's lifespan: at shutdown, frames this process accepted but had not yet queued for
inference (a partial batch waiting for more frames) are queued, so none is left pending."""

from __future__ import annotations

import asyncio
import logging

from emotion.batcher import flush_batchers

logger = logging.getLogger(__name__)
FLUSH_TIMEOUT_S = 5.0


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                async with asyncio.timeout(FLUSH_TIMEOUT_S):
                    await flush_batchers()
            except Exception:
                # the periodic re-queue of stale pending readings picks up what is left
                logger.exception("could not queue every accepted frame at shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return
