from celery import shared_task
from django.conf import settings

from tutoring.services import sessions_end_idle


@shared_task(name="tutoring.tasks.end_idle_sessions", **settings.HOUSEKEEPING_TASK_OPTIONS)
def end_idle_sessions() -> list[int]:
    """End open sessions idle for ``SESSION_IDLE_MINUTES``; returns their ids (idempotent)."""
    return sessions_end_idle()
