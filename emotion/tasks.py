from celery import shared_task

from emotion.services import readings_analyse


@shared_task(name="emotion.tasks.analyse_batch", acks_late=True, reject_on_worker_lost=True)
def analyse_batch(reading_ids: list[int]) -> dict:
    """Analyse a batch of pending readings (routed to the GPU queue).

    Takes ids only and re-fetches; readings already analysed are skipped, so a redelivered
    batch (worker killed, broker restart) completes exactly once.
    """
    return readings_analyse(reading_ids=[int(i) for i in reading_ids])


@shared_task(name="emotion.tasks.requeue_stale_readings")
def requeue_stale_readings() -> int:
    """Periodic safety net (beat): pending readings older than a minute are queued again."""
    from emotion.services import readings_requeue_stale

    return readings_requeue_stale(older_than_s=60)


@shared_task(name="emotion.tasks.push_course_summary", ignore_result=True)
def push_course_summary(course_id: int) -> None:
    """The live summary of a course whose batches came faster than ``LIVE_PUSH_INTERVAL_MS``:
    sent once at the end of the interval, with the newest of each session touched."""
    from emotion.live import course_summary_push

    course_summary_push(int(course_id), trailing=True)
