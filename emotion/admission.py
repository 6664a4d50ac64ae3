"""How many frames the inference side can take now: what stream credit is granted from.

With Redis (the production layout: several server processes, one or more workers), the
frames pending across every process (the frame store's ``pending``) are held to what the
workers can analyse per second times ``STREAM_QUEUE_SECONDS``; while no rate has been
measured lately (idle workers), to ``ADMISSION_FLOOR`` frames. The rate is the workers'
capacity (frames per second of work, times the workers that had work), not their throughput:
frames analysed per second follow the credit granted, so a budget of throughput × seconds
would shrink whenever latency exceeded those seconds. Past saturation credit is granted only
as frames are analysed: clients skip capturing instead of uploading frames that would be
refused, and the queue stays short, so latency stays bounded while throughput stays at the
plateau.

Embedded (no Redis: one process, tasks run in it), there is nothing to measure: ``room``
returns None and the process's own budget (``STREAM_MAX_IN_FLIGHT_TOTAL``) is the bound.
"""

from __future__ import annotations

import logging

from django.conf import settings

from emotion.framestore import get_frame_store

logger = logging.getLogger(__name__)

RATE_WINDOW_S = 5  # the workers' rate is their mean over this many whole seconds
PENDING_WITHIN_S = 60  # frames waiting longer than this were lost, not queued
ADMISSION_FLOOR = 16  # frames: what an idle system admits before any rate is measured
MIN_BUDGET = 2  # frames: however slow the workers, one waits while another is analysed


def budget(rate: float | None) -> int:
    """Frames that may wait for inference, all processes together, when the workers can
    analyse ``rate`` frames/s (None: not measured lately)."""
    if rate is None:
        return ADMISSION_FLOOR
    return max(MIN_BUDGET, round(rate * settings.STREAM_QUEUE_SECONDS))


def room() -> int | None:
    """Frames more that the workers can take now (≥ 0), or None when nothing bounds it here
    (embedded, or Redis unreachable: then the process's own budget still holds)."""
    if not settings.REDIS_URL:
        return None
    store = get_frame_store()
    try:
        return max(0, budget(store.analysed_rate(RATE_WINDOW_S)) - store.pending(PENDING_WITHIN_S))
    except Exception:  # Redis away: uploads fail on their own; credit falls back to the process's
        logger.warning("could not read the inference backlog from Redis", exc_info=True)
        return None
