"""Run the periodic jobs without Celery beat (the embedded default: `make run`).

With Redis, ``celery -A config beat`` schedules the same jobs as tasks; this command calls
their underlying services directly, every ``--interval`` seconds, until SIGTERM/SIGINT or
until the process named by ``--parent-pid`` is gone (scripts/run.sh passes its own pid, which
``exec`` hands on to the server, so the jobs stop when the server stops).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

logger = logging.getLogger("tutoring.periodic")

# how often the stop conditions (signal, parent gone) are checked while waiting
POLL_SECONDS = 1.0


# Each job returns (how many rows it touched, what it did): logged at INFO when it did
# something, at DEBUG when there was nothing to do (every few minutes, on a quiet server).


def job_purge_expired() -> tuple[int, str]:
    from records.services import retention_purge_expired

    deleted = retention_purge_expired()
    readings, sessions = sum(deleted["readings"].values()), sum(deleted["sessions"].values())
    return readings + sessions, (
        f"{readings} reading(s) and {sessions} ended session(s) past retention deleted"
    )


def job_end_idle() -> tuple[int, str]:
    from tutoring.services import sessions_end_idle

    ended = sessions_end_idle()
    return len(ended), f"{len(ended)} idle session(s) ended"


def job_requeue_stale(older_than_s: float) -> tuple[int, str]:
    from emotion.services import readings_requeue_stale

    n = readings_requeue_stale(older_than_s=older_than_s)
    return n, f"{n} stale pending reading(s) queued again"


class Command(BaseCommand):
    help = (
        "Run the periodic jobs (end idle sessions, retention purge, re-queue of stale pending "
        "readings) every "
        "--interval seconds, for deployments without Celery beat. --once runs them once and "
        "exits. Stops cleanly on SIGTERM/SIGINT."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--interval",
            type=float,
            default=300.0,
            metavar="SECONDS",
            help="seconds between runs (default 300)",
        )
        parser.add_argument("--once", action="store_true", help="run the jobs once and exit")
        parser.add_argument(
            "--requeue-older-than",
            type=float,
            default=None,
            metavar="SECONDS",
            help=(
                "re-queue readings pending longer than this. Default: with REDIS_URL (the "
                "frame store is shared), FRAME_REQUEUE_AFTER_SECONDS (60), checked every "
                "FRAME_REQUEUE_INTERVAL_SECONDS (30) as by the beat task, not only every "
                "--interval; embedded, FRAME_TTL_SECONDS + 60, "
                "because the frames wait in the web server's memory, which this process cannot "
                "read: by then they have expired there and are recorded as frame_expired, "
                "never taken from under a batch the server is still running"
            ),
        )
        parser.add_argument(
            "--parent-pid",
            type=int,
            default=None,
            metavar="PID",
            help="exit when this process is no longer our parent (it exited)",
        )

    def handle(self, *args, interval, once, requeue_older_than, parent_pid, **options):
        if interval <= 0:
            raise CommandError("--interval must be positive")
        if requeue_older_than is None:
            requeue_older_than = (
                settings.FRAME_REQUEUE_AFTER_SECONDS
                if settings.REDIS_URL
                else settings.FRAME_TTL_SECONDS + 60.0
            )
        # with a shared frame store the re-queue is what analyses a lost batch's frames before
        # they expire: as often as beat would run it
        requeue_every = interval
        if settings.REDIS_URL:
            requeue_every = min(interval, settings.FRAME_REQUEUE_INTERVAL_SECONDS)
        jobs = [
            ("end_idle", job_end_idle, interval),
            ("purge_expired", job_purge_expired, interval),
            ("requeue_stale", lambda: job_requeue_stale(requeue_older_than), requeue_every),
        ]
        if once:
            failed = self.run_jobs(jobs)
            if failed:
                raise CommandError(f"job(s) failed: {', '.join(failed)}")
            return

        stop = threading.Event()
        reason = {}

        def on_signal(signum, frame):
            reason.setdefault("why", signal.Signals(signum).name)
            stop.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        logger.info(
            "periodic jobs every %.0f s (re-queue every %.0f s, after %.0f s pending)",
            interval,
            requeue_every,
            requeue_older_than,
        )
        due = {name: 0.0 for name, _, _ in jobs}
        try:
            while not stop.is_set():
                now = time.monotonic()
                self.run_jobs([j for j in jobs if due[j[0]] <= now], reconnect=True)
                for name, _, every in jobs:
                    if due[name] <= now:
                        due[name] = now + every
                deadline = min(due.values())
                while not stop.is_set():
                    if parent_pid is not None and os.getppid() != parent_pid:
                        reason.setdefault("why", f"parent {parent_pid} exited")
                        stop.set()
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    stop.wait(min(POLL_SECONDS, left))
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
        logger.info("periodic jobs stopped (%s)", reason.get("why", "stop"))

    def run_jobs(self, jobs, reconnect: bool = False) -> list[str]:
        """Run each job; a failing job is logged and does not stop the others or the loop."""
        from django.db import close_old_connections

        failed = []
        for name, job, _ in jobs:
            if reconnect:  # the database restarted since the last run: reconnect, don't fail
                close_old_connections()
            try:
                n, what = job()
            except Exception:
                logger.exception("periodic job %s failed", name)
                failed.append(name)
            else:
                logger.log(logging.INFO if n else logging.DEBUG, "%s: %s", name, what)
        return failed
