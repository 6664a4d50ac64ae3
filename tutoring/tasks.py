from celery import shared_task

from tutoring.services import readings_purge_expired


@shared_task(name="tutoring.tasks.purge_expired_readings")
def purge_expired_readings() -> dict:
    """Delete readings past each course's retention (idempotent: re-running deletes nothing)."""
    return {str(k): v for k, v in readings_purge_expired().items()}
