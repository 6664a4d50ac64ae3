from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from emotion.services import readings_analyse

#: a database that dropped the worker's connection (restart, failover, a terminated backend)
#: is usually back within seconds: the batch is tried again, waiting 2, 4, 8, 16, 16… s
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)
DB_RETRY_BACKOFF_MAX_S = 16
DB_RETRIES = 8


@shared_task(
    name="emotion.tasks.analyse_batch",
    ignore_result=True,  # its figures are logged; a result kept per batch is one more write
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT_DB_ERRORS,
    retry_backoff=2,
    retry_backoff_max=DB_RETRY_BACKOFF_MAX_S,
    retry_jitter=False,
    max_retries=DB_RETRIES,
)
def analyse_batch(reading_ids: list[int]) -> dict:
    """Analyse a batch of pending readings (routed to the GPU queue).

    Takes ids only and re-fetches; readings already analysed are skipped, so a redelivered
    batch (worker killed, broker restart) or a retried one (the database dropped the
    connection) completes exactly once.
    """
    return readings_analyse(reading_ids=[int(i) for i in reading_ids])


@shared_task(name="emotion.tasks.requeue_stale_readings", **settings.HOUSEKEEPING_TASK_OPTIONS)
def requeue_stale_readings() -> int:
    """Periodic safety net (beat): readings pending longer than FRAME_REQUEUE_AFTER_SECONDS
    are queued again."""
    from emotion.services import readings_requeue_stale

    return readings_requeue_stale(older_than_s=settings.FRAME_REQUEUE_AFTER_SECONDS)


@shared_task(name="emotion.tasks.push_course_summary", ignore_result=True)
def push_course_summary(course_id: int) -> None:
    """The live summary of a course whose batches came faster than ``LIVE_PUSH_INTERVAL_MS``:
    sent once at the end of the interval, with the newest of each session touched."""
    from emotion.live import course_summary_push

    course_summary_push(int(course_id), trailing=True)


@shared_task(
    name="emotion.tasks.finetune_model",
    acks_late=False,  # a run outlasts the broker's visibility timeout: never handed out twice
    time_limit=settings.MODEL_FINETUNE_TIME_LIMIT,
    soft_time_limit=settings.MODEL_FINETUNE_TIME_LIMIT * 9 // 10,
)
def finetune_model(
    config: dict | None = None, fer_val_limit: int | None = None, promote: bool = False
) -> dict:
    """Fine-tune the active version on the reviewed crops (routed to the GPU queue) and
    register the result as a candidate; with ``promote``, judge it at once. Takes a few
    settings only and reads everything else itself; each run registers its own file once."""
    from emotion.finetuning import model_finetune
    from emotion.registry import model_version_promote
    from ml.finetune import FinetuneConfig

    mv = model_finetune(config=FinetuneConfig(**(config or {})), fer_val_limit=fer_val_limit)
    if promote:
        mv = model_version_promote(version=mv)
    return {"id": mv.pk, "sha256": mv.checkpoint_sha256, "status": mv.status}
