from celery import shared_task
from django.conf import settings

from records.services import retention_purge_expired


# The task name is the one it had in tutoring.tasks: beat's schedule and messages already
# queued under that name still find it.
@shared_task(name="tutoring.tasks.purge_expired_readings", **settings.HOUSEKEEPING_TASK_OPTIONS)
def purge_expired_readings() -> dict:
    """Delete what is past each course's retention: readings, and ended sessions with them.

    Returns ``{"readings": {course_id: n}, "sessions": {course_id: n}}`` (ids as strings, for
    JSON); idempotent: re-running deletes nothing.
    """
    deleted = retention_purge_expired()
    return {
        kind: {str(k): v for k, v in per_course.items()} for kind, per_course in deleted.items()
    }
