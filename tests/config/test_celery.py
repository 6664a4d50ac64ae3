"""A real Celery round trip over Redis with a worker process, and the same task in-process."""

import os

import pytest

from config.celery import app, ping


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_task_runs_on_a_real_worker_over_redis(celery_worker):
    result = ping.delay("over-redis")
    out = result.get(timeout=30)
    assert out["token"] == "over-redis"
    assert out["pid"] == celery_worker.pid != os.getpid()
    # the worker answers control pings too (what /healthz uses)
    assert app.control.ping(timeout=2)


def test_same_task_runs_in_process_in_embedded_mode():
    assert app.conf.task_always_eager
    out = ping.delay("in-process").get(timeout=5)
    assert out == {"token": "in-process", "pid": os.getpid(), "host": out["host"]}


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("emotion.tasks.analyse_batch", "gpu"),
        ("emotion.tasks.finetune_model", "gpu"),
        ("config.ping", "default"),
    ],
)
def test_routes(task, queue, settings):
    assert app.amqp.router.route({}, task)["queue"].name == (
        settings.CELERY_GPU_QUEUE if queue == "gpu" else queue
    )
