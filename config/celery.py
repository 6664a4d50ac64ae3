"""The Celery app. Configured from Django settings (``CELERY_`` namespace).

Queues: inference tasks (``emotion.tasks.analyse_*``) and the fine-tune
(``emotion.tasks.finetune_model``) go to the GPU queue (``CELERY_GPU_QUEUE``, default ``gpu``),
everything else to ``default``. Workers:

    celery -A config worker -Q default -c 2                 # housekeeping, reports
    celery -A config worker -Q gpu -P prefork -c 1          # inference: one child, model loaded once

The GPU worker runs the ``prefork`` pool with one child: Celery enforces the task time limits by
killing the pool's child, which the ``solo`` and ``threads`` pools do not have. The model (and
so CUDA) is loaded lazily by the child on its first task, never in the parent before a fork.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("affect")
app.config_from_object("django.conf:settings", namespace="CELERY")


def _route(name, args, kwargs, options, task=None, **kw):
    from django.conf import settings

    if name.startswith("emotion.tasks.analyse") or name == "emotion.tasks.finetune_model":
        return {"queue": settings.CELERY_GPU_QUEUE}
    return {"queue": settings.CELERY_TASK_DEFAULT_QUEUE}


app.conf.task_routes = (_route,)
app.autodiscover_tasks()


@app.task(name="config.ping")
def ping(token: str = "") -> dict:
    """Diagnostic task: proves which process ran it (used by /healthz tooling and tests)."""
    import socket

    return {"token": token, "pid": os.getpid(), "host": socket.gethostname()}
