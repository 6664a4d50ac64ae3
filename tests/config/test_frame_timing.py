"""Frame TTL, task time limits, the broker's visibility timeout and the re-queue agree (issue
20, item 11): a batch whose worker died runs again while its frames' bytes are still held, and
settings that cannot do that are refused when they load."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT

TIMING = """
import json, django
from django.conf import settings
django.setup()
from config.celery import app
o = app.conf.broker_transport_options
print(json.dumps({
    "ttl": settings.FRAME_TTL_SECONDS,
    "hard": app.conf.task_time_limit,
    "soft": app.conf.task_soft_time_limit,
    "visibility": o["visibility_timeout"],
    "sweep": o["unacked_restore_interval"] * o["unacked_restore_throttle"],
    "requeue_after": settings.FRAME_REQUEUE_AFTER_SECONDS,
    "requeue_every": app.conf.beat_schedule["requeue-stale-readings"]["schedule"],
}))
"""


def load(env: dict) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "config.settings", "HOME": "/tmp"}
    return subprocess.run(
        [sys.executable, "-c", TIMING],
        cwd=ROOT,
        env={**base, "SECRET_KEY": "x", "REDIS_URL": "redis://127.0.0.1:6379/3", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_defaults_redeliver_a_dead_workers_batch_within_a_minute_and_before_its_ttl():
    import json

    out = load({})
    assert out.returncode == 0, out.stderr
    t = json.loads(out.stdout.strip().splitlines()[-1])
    assert t["soft"] < t["hard"] < t["visibility"]  # a running batch is not handed out twice
    assert t["visibility"] + t["sweep"] <= 55  # back in the queue within a minute of dying
    assert t["visibility"] + t["sweep"] + t["hard"] <= t["ttl"]  # and runs before it expires
    assert t["requeue_after"] + t["requeue_every"] + t["hard"] <= t["ttl"]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CELERY_VISIBILITY_TIMEOUT": "600"}, "CELERY_VISIBILITY_TIMEOUT (600)"),
        ({"FRAME_TTL_SECONDS": "60"}, "FRAME_TTL_SECONDS (60)"),
        ({"FRAME_REQUEUE_AFTER_SECONDS": "600"}, "FRAME_REQUEUE_AFTER_SECONDS"),
        ({"CELERY_TASK_SOFT_TIME_LIMIT": "50"}, "CELERY_TASK_SOFT_TIME_LIMIT (50)"),
        ({"FRAME_REQUEUE_INTERVAL_SECONDS": "0"}, "must be positive"),
    ],
)
def test_inconsistent_values_are_refused_with_the_reason(env, named):
    out = load(env)
    assert out.returncode != 0
    assert "ImproperlyConfigured" in out.stderr and named in out.stderr, out.stderr[-1500:]
