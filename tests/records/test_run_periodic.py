"""`manage.py run_periodic`: the periodic jobs where there is no Celery beat (`make run`)."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from emotion.models import Reading
from tests.conftest import ROOT, _test_database_url
from tests.factories import ReadingFactory
from tutoring.models import LearnerSession


@pytest.fixture
def requeued(monkeypatch):
    """Calls of the re-queue service (the real one would run inference in this process)."""
    calls = []
    monkeypatch.setattr(
        "emotion.services.readings_requeue_stale",
        lambda *, older_than_s: calls.append(older_than_s) or 0,
    )
    return calls


def test_once_purges_what_is_past_retention(world, requeued, settings, caplog):
    old = timezone.now() - timedelta(days=world.course.retention_days + 1)
    expired = ReadingFactory(session=world.session_a, sequence=0, captured_at=old)
    fresh = ReadingFactory(session=world.session_a, sequence=1, captured_at=timezone.now())
    LearnerSession.objects.filter(pk=world.session_b.pk).update(status="ended", ended_at=old)
    with caplog.at_level("INFO", logger="tutoring.periodic"):
        call_command("run_periodic", "--once")
    assert set(Reading.objects.values_list("pk", flat=True)) == {fresh.pk}
    assert expired.pk not in Reading.objects.values_list("pk", flat=True)
    assert not LearnerSession.objects.filter(pk=world.session_b.pk).exists()
    assert LearnerSession.objects.filter(pk=world.session_a.pk).exists()  # active: kept
    # embedded: frames wait in the web server's memory, so only those past their TTL
    assert requeued == [settings.FRAME_TTL_SECONDS + 60.0]
    assert "1 reading(s) and 1 ended session(s) past retention deleted" in caplog.text


def test_with_redis_stale_readings_are_requeued_after_a_minute(db, requeued, settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/4"  # the frame store is shared: as the beat task
    call_command("run_periodic", "--once")
    call_command("run_periodic", "--once", "--requeue-older-than", "5")
    assert requeued == [60.0, 5.0]


def test_a_failing_job_is_reported_and_does_not_stop_the_others(world, monkeypatch, requeued):
    def boom(**kw):
        raise RuntimeError("database away")

    monkeypatch.setattr("records.services.retention_purge_expired", boom)
    with pytest.raises(CommandError, match="purge_expired"):
        call_command("run_periodic", "--once")
    assert len(requeued) == 1


def _spawn(args, log, parent_wrapper=False, env=None):
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "REDIS_URL": "",
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "INFO",
        **(env or {}),
    }
    cmd = [sys.executable, "manage.py", "run_periodic", *args]
    if parent_wrapper:  # as scripts/run.sh does: the parent exec()s into the server
        cmd = ["bash", "-c", 'python=$1; shift; "$python" "$@" --parent-pid $$ & exec sleep 2', "-"]
        cmd += [sys.executable, "manage.py", "run_periodic", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_for(predicate, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_loop_exits_cleanly_on_sigterm(db, tmp_path):
    log_path = tmp_path / "periodic.log"
    with log_path.open("w") as log:
        p = _spawn(["--interval", "3600"], log)
    try:
        assert _wait_for(lambda: "periodic jobs every" in log_path.read_text()), (
            log_path.read_text()
        )
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=15) == 0
    finally:
        if p.poll() is None:
            p.kill()
    assert "periodic jobs stopped (SIGTERM)" in log_path.read_text()


def test_loop_exits_when_its_parent_server_exits(db, tmp_path):
    log_path = tmp_path / "periodic.log"
    with log_path.open("w") as log:
        wrapper = _spawn(["--interval", "3600"], log, parent_wrapper=True)
    assert wrapper.wait(timeout=30) == 0  # the "server" (sleep 2) has exited
    assert _wait_for(lambda: "periodic jobs stopped" in log_path.read_text()), log_path.read_text()
    assert f"parent {wrapper.pid} exited" in log_path.read_text()


def test_with_redis_the_requeue_runs_as_often_as_beat_runs_it(db, tmp_path):
    """A lost batch's frames are picked up before their bytes expire: with a shared frame
    store the re-queue runs every FRAME_REQUEUE_INTERVAL_SECONDS, not only every --interval."""
    log_path = tmp_path / "periodic.log"
    env = {"REDIS_URL": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")}
    env.update(FRAME_REQUEUE_INTERVAL_SECONDS="1", LOG_LEVEL="DEBUG")
    with log_path.open("w") as log:
        p = _spawn(["--interval", "3600"], log, env=env)
    try:
        runs = lambda: log_path.read_text().count("requeue_stale:")  # noqa: E731
        assert _wait_for(lambda: runs() >= 3, 30), log_path.read_text()[-3000:]
        assert log_path.read_text().count("purge_expired:") == 1
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(15)
