"""Send a Channels group message from sync code (Celery tasks, services)."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def group_send(group: str, event_type: str, payload: dict) -> bool:
    """Send ``{"type": event_type, "payload": payload}`` to ``group``; False if the layer failed.

    Live updates are best effort: a broadcast failure is logged and never breaks the caller's
    write (the data is in the database and readable through the API).
    """
    layer = get_channel_layer()
    if layer is None:
        return False
    try:
        async_to_sync(layer.group_send)(group, {"type": event_type, "payload": payload})
    except Exception:
        logger.exception("broadcast to %s failed", group)
        return False
    return True
