"""Housekeeping tasks are not bound by the inference batches' timing: the broker's visibility
timeout (45 s) and task limits (40/30 s) are sized so a dead worker's batch runs again before
its frames expire; a retention purge of a large school may need longer, and redelivered after
45 s it would run twice at once."""

from django.conf import settings

from emotion.tasks import analyse_batch, requeue_stale_readings
from records.tasks import purge_expired_readings
from tutoring.tasks import end_idle_sessions


def test_housekeeping_is_acknowledged_on_receipt_with_limits_of_its_own():
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    for task in (purge_expired_readings, end_idle_sessions, requeue_stale_readings):
        assert task.acks_late is False, task.name
        assert task.time_limit == settings.HOUSEKEEPING_TASK_TIME_LIMIT > visibility
        assert task.soft_time_limit < task.time_limit


def test_inference_stays_acknowledged_late_within_the_visibility_timeout():
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert analyse_batch.acks_late is True
    assert visibility > settings.CELERY_TASK_TIME_LIMIT
