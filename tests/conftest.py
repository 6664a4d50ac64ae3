"""Suite-wide fixtures.

Every test runs its database work on the DATABASE_URL database (PostgreSQL under
``make test``). By default a test sees the embedded wiring (in-memory channel layer, Celery
eager); a test marked ``redis`` gets channels-redis and a Redis-backed Celery on
``TEST_REDIS_URL`` instead, and the ``celery_worker`` fixture starts a real worker process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest

from tests.services import require_service, tcp_reachable, test_redis_url

ROOT = Path(__file__).resolve().parent.parent
FER_ROOT = Path(os.environ.get("FER2013_ROOT", ROOT.parent / "shared" / "datasets" / "fer2013"))


def redis_layers(url: str) -> dict:
    """The channel layer production builds on ``url`` (its Redis client settings included)."""
    from config.redis_clients import channel_layers

    return channel_layers(url)


@pytest.fixture(autouse=True)
def _service_mode(request, settings):
    from config.celery import app

    if request.node.get_closest_marker("redis"):
        url = test_redis_url()
        require_service("Redis", tcp_reachable(url, 6379), url)
        settings.REDIS_URL = url
        settings.CHANNEL_LAYERS = redis_layers(url)
        eager = False
    else:
        settings.REDIS_URL = ""
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
        eager = True
    old = app.conf.task_always_eager
    app.conf.task_always_eager = eager
    # Celery's "inside a task" flag is a process global that eager tasks run concurrently in
    # threads (sockets of earlier tests) can leave set; it only guards result.get().
    from celery._state import _set_task_join_will_block

    _set_task_join_will_block(False)
    yield
    app.conf.task_always_eager = old


@pytest.fixture(autouse=True)
def _no_cached_active_model():
    """Each test asks its own database which model is active: the cache (Redis under the test
    script, shared with worker processes, or this process's memory) may still name an earlier
    test's version, whose checkpoint file went with that test's temporary folder."""
    from django.core.cache import cache

    from emotion.registry import ACTIVE_KEY

    cache.delete(ACTIVE_KEY)
    yield
    cache.delete(ACTIVE_KEY)


@pytest.fixture(scope="session")
def fer_root() -> Path:
    require_service("FER2013 dataset", (FER_ROOT / "validation").is_dir(), str(FER_ROOT))
    return FER_ROOT


@pytest.fixture(scope="session")
def fer_val(fer_root):
    """FER2013's validation split (PublicTest), decoded once per test run."""
    from ml.data import load_image_folder

    return load_image_folder(fer_root / "validation")


def _test_database_url() -> str:
    """DATABASE_URL pointing at the test database pytest-django created."""
    from django.db import connection

    u = urlparse(os.environ["DATABASE_URL"])
    return urlunparse(u._replace(path="/" + str(connection.settings_dict["NAME"])))


class WorkerProcess:
    def __init__(self, env: dict, queues: str, log: Path, app: str = "config", pool: str = "solo"):
        self.env, self.queues, self.log = env, queues, log
        self.app, self.pool = app, pool
        log.touch()
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        import socket

        from config.celery import app

        self.node = f"test-{os.getpid()}-{time.monotonic_ns()}@{socket.gethostname()}"
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            self.app,
            "worker",
            "-Q",
            self.queues,
            "-P",
            self.pool,
            "-c",
            "1",
            "-n",
            self.node,
            "--without-gossip",
            "--without-mingle",
            "-l",
            "info",
        ]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()[-3000:]}")
            replies = app.control.ping(destination=[self.node], timeout=0.5)
            if any(self.node in r for r in replies):
                return
        raise RuntimeError(
            f"worker did not answer ping in {timeout}s: {self.log.read_text()[-3000:]}"
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def worker_factory(request, django_db_setup, settings, tmp_path):
    """Start real Celery worker processes on Redis, using the test database. Needs the
    ``redis`` mark and a ``django_db(transaction=True)`` test (workers see committed rows).
    ``pool="prefork"`` runs the task in one child process, as ``make worker-gpu`` does."""
    assert request.node.get_closest_marker("redis"), "workers need @pytest.mark.redis"
    started = []

    def start(
        name: str = "worker", *, app: str = "config", pool: str = "solo", **extra_env
    ) -> WorkerProcess:
        env = dict(
            os.environ,
            DATABASE_URL=_test_database_url(),
            REDIS_URL=test_redis_url(),
            CELERY_GPU_QUEUE=settings.CELERY_GPU_QUEUE,
            PYTHONUNBUFFERED="1",
        )
        env.update({k: str(v) for k, v in extra_env.items()})
        queues = f"default,{settings.CELERY_GPU_QUEUE}"
        w = WorkerProcess(env, queues, tmp_path / f"{name}.log", app=app, pool=pool)
        started.append(w)
        w.start()
        return w

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def celery_worker(worker_factory):
    """One real Celery worker process (see ``worker_factory``)."""
    return worker_factory()


@pytest.fixture
def api_client_for():
    from rest_framework.test import APIClient

    def make(user):
        c = APIClient()
        c.force_authenticate(user)
        return c

    return make
