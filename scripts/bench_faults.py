#!/usr/bin/env python
"""Fault benchmark: does any accepted frame get lost, and does anything need a manual step?

    PG_URL=postgres://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python scripts/bench_faults.py [--learners 20] [--seconds 20]
    .venv/bin/python scripts/bench_faults.py --quiet-socket-minutes 10

Everything is its own and on loopback: a redis-server on a free port (never a shared one), a
PostgreSQL database created for the run and dropped after it, the product's server
(``config.serve.server_argv``), one inference worker as ``make worker-gpu`` runs it and the
periodic jobs (``manage.py run_periodic``, as without beat). N learners stream 1 frame/s over
the stream WebSocket (scripts/bench_pipeline.py's client); in each scenario one fault is
injected a third of the way in, then the run waits for the pipeline to settle and prints per
scenario: frames accepted, stored, stored with an error (e.g. frame_expired), lost (acked as
accepted but no reading, or still pending after recovery), and how long the server took to
exit on SIGTERM. The frame TTL is shortened (--ttl) so the "worker stopped past the TTL"
scenario fits; the other timing settings are the product's defaults, checked against it.

``--quiet-socket-minutes N``: one instructor live socket on a quiet course for N minutes,
printing how often it was closed (reconnecting each time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import ROOT, free_port, make_frames, run_level, setup_data  # noqa: E402

from config.serve import server_argv  # noqa: E402
from tests.redis_server import PrivateRedis  # noqa: E402

SIGTERM_GRACE_S = 15.0
APP_NAME = "affect-bench-faults"


def pg_admin(base_url: str, sql: str) -> None:
    subprocess.run(["psql", base_url, "-q", "-c", sql], check=True, capture_output=True)


class Stack:
    """The processes under test, with the faults to inject into them."""

    def __init__(self, env: dict, logs: Path, port: int, redis: PrivateRedis):
        self.env, self.logs, self.port, self.redis = env, logs, port, redis
        self.server = self.worker = self.periodic = None
        self.sigterm_exit_s: list[float] = []

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("ab")
        return subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_server(self) -> None:
        self.server = self._spawn("server", server_argv("127.0.0.1", self.port))
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/accounts/login/", timeout=2)
                return
            except OSError:
                if self.server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start: see server.log") from None
                time.sleep(0.3)

    def start_worker(self) -> None:
        log = self.logs / "worker.log"
        start = log.stat().st_size if log.exists() else 0
        cmd = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "gpu"]
        cmd += ["-P", "prefork", "-c", "1", "-l", "info", "-n", f"faults-{self.port}@%h"]
        self.worker = self._spawn("worker", cmd)
        deadline = time.monotonic() + 90
        while " ready." not in log.read_text()[start:]:
            if self.worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the worker did not start: see worker.log")
            time.sleep(0.3)

    def start_periodic(self) -> None:
        cmd = [sys.executable, "manage.py", "run_periodic", "--interval", "3600"]
        self.periodic = self._spawn("periodic", cmd)

    def worker_child(self) -> int | None:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.worker.pid:
                return int(stat.parent.name)
        return None

    # --- faults -----------------------------------------------------------------------------
    def kill_child(self) -> str:
        pid = self.worker_child()
        if pid:
            os.kill(pid, signal.SIGKILL)
        return f"SIGKILL worker child {pid}"

    def kill_worker(self, down_s: float = 3.0) -> str:
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(10)
        time.sleep(down_s)
        self.start_worker()
        return f"SIGKILL whole worker, restarted after {down_s:.0f} s"

    def restart_redis(self) -> str:
        self.redis.restart()
        return "redis-server restarted (no persistence: its data is lost)"

    def terminate_server(self) -> str:
        t0 = time.monotonic()
        self.server.send_signal(signal.SIGTERM)
        try:
            self.server.wait(SIGTERM_GRACE_S)
            took = f"{time.monotonic() - t0:.1f} s"
        except subprocess.TimeoutExpired:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait(10)
            took = f"hung > {SIGTERM_GRACE_S:.0f} s, SIGKILL"
        self.sigterm_exit_s.append(time.monotonic() - t0)
        self.start_server()
        return f"server SIGTERM: exited in {took}; restarted"

    def terminate_backends(self, base_url: str, db: str) -> str:
        sql = (
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{db}' AND application_name = '{APP_NAME}'"
        )
        out = subprocess.run(["psql", base_url, "-Atc", sql], capture_output=True, text=True)
        return f"pg_terminate_backend x{len(out.stdout.split())}"

    def stop_worker_past_ttl(self, ttl: int) -> str:
        self.worker.send_signal(signal.SIGTERM)
        self.worker.wait(60)
        time.sleep(ttl + 10)
        self.start_worker()
        return f"worker stopped {ttl + 10} s (TTL {ttl} s), restarted"

    def stop_all(self) -> None:
        for p in (self.periodic, self.server, self.worker):
            if p is not None and p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(20)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)


def tally(sessions, acked: int, settle_s: float) -> dict:
    """Wait for the sessions' readings to settle (none pending) for at most ``settle_s``."""
    from django.db import close_old_connections

    from emotion.models import Reading

    qs = Reading.objects.filter(session__in=sessions)
    deadline = time.monotonic() + settle_s
    while True:
        close_old_connections()
        try:
            pending = qs.filter(analysed_at__isnull=True).count()
        except Exception:  # our own connection may be one the scenario terminated
            pending = -1
        if pending == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    settled = time.monotonic()
    rows = qs.count()
    stored = qs.filter(analysed_at__isnull=False, error="").count()
    errors = qs.filter(analysed_at__isnull=False).exclude(error="").count()
    kinds = sorted(set(qs.exclude(error="").values_list("error", flat=True)))
    pending = qs.filter(analysed_at__isnull=True).count()
    return {
        "accepted": rows,
        "acked": acked,
        "stored": stored,
        "with_error": errors,
        "errors": ",".join(k for k in kinds if k),
        "lost": pending + max(0, acked - rows),
        "settled": settled,
    }


async def scenario(stack, name, fault, args, course, teacher_cookie, learners, frames):
    """Stream, inject ``fault`` a third of the way in, then stream again from new sockets (as
    the browser reconnects) and wait for every reading to settle."""
    import websockets

    loop = asyncio.get_running_loop()

    def quiet_closed_sockets(loop, context):  # the fault closes the clients' sockets
        if not isinstance(context.get("exception"), websockets.ConnectionClosed):
            loop.default_exception_handler(context)

    loop.set_exception_handler(quiet_closed_sockets)

    async def inject():
        await asyncio.sleep(args.seconds / 3)
        t = time.monotonic()
        return await loop.run_in_executor(None, fault), t

    t0 = time.monotonic()
    level = asyncio.create_task(
        run_level(stack.port, course, teacher_cookie, learners, frames, args.seconds)
    )
    what, t_fault = await inject()
    sessions, *_, acks = await level
    after, *_, acks_after = await run_level(
        stack.port, course, teacher_cookie, learners, frames, args.seconds / 2
    )
    acked = acks.get("accepted", 0) + acks_after.get("accepted", 0)
    r = await asyncio.to_thread(tally, sessions + after, acked, args.settle)
    r.update(
        name=name,
        what=what,
        reconnected=acks_after.get("accepted", 0),
        settle_s=r["settled"] - t_fault,
        total_s=time.monotonic() - t0,
    )
    return r


def run_faults(args) -> int:
    pg_base = args.pg_url
    db = f"affect_faults_{os.getpid()}"
    pg_admin(pg_base, f"CREATE DATABASE {db}")
    work = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    redis = PrivateRedis(work)
    redis.start()
    db_url = pg_base.rsplit("/", 1)[0] + f"/{db}"
    # the product's processes connect under this name: the fault terminates theirs, not ours
    app_db_url = f"{db_url}?application_name={APP_NAME}"
    env = dict(
        os.environ,
        DATABASE_URL=app_db_url,
        REDIS_URL=redis.url,
        DATA_DIR=str(work),
        PYTHONUNBUFFERED="1",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        THROTTLE_USER="100000/min",
        FRAME_TTL_SECONDS=str(args.ttl),
        FRAME_REQUEUE_AFTER_SECONDS=str(args.requeue_after),
    )
    os.environ.update(DATABASE_URL=db_url, REDIS_URL=redis.url, DATA_DIR=str(work))
    os.environ.update(
        FRAME_TTL_SECONDS=env["FRAME_TTL_SECONDS"],
        FRAME_REQUEUE_AFTER_SECONDS=env["FRAME_REQUEUE_AFTER_SECONDS"],
    )
    (work / "static").mkdir(exist_ok=True)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    course, teacher_cookie, learners = setup_data(args.learners)
    frames = make_frames()
    stack = Stack(env, work, free_port(), redis)
    rows = []
    try:
        stack.start_server()
        stack.start_worker()
        stack.start_periodic()
        print(
            f"{args.learners} learners at 1 frame/s, {args.seconds:.0f} s per scenario, fault at "
            f"{args.seconds / 3:.0f} s; FRAME_TTL_SECONDS={args.ttl}, FRAME_REQUEUE_AFTER_SECONDS="
            f"{args.requeue_after}, other timings the product's defaults; logs in {work}",
            flush=True,
        )
        asyncio.run(run_level(stack.port, course, teacher_cookie, learners[:2], frames, 4))
        faults = {
            "kill worker child": stack.kill_child,
            "kill whole worker": stack.kill_worker,
            "restart redis": stack.restart_redis,
            "SIGTERM server": stack.terminate_server,
            "terminate pg backends": lambda: stack.terminate_backends(pg_base, db),
            "worker stopped > TTL": lambda: stack.stop_worker_past_ttl(args.ttl),
        }
        chosen = args.only.split(",") if args.only else list(faults)
        for name in chosen:
            r = asyncio.run(
                scenario(stack, name, faults[name], args, course, teacher_cookie, learners, frames)
            )
            rows.append(r)
            shown = {k: round(v, 1) if isinstance(v, float) else v for k, v in r.items()}
            shown.pop("settled")
            print(json.dumps(shown), flush=True)
    finally:
        stack.stop_all()
        redis.stop()
        from django.db import connections

        connections.close_all()
        pg_admin(pg_base, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    print_table(rows, stack.sigterm_exit_s)
    return 0 if rows and all(r["lost"] == 0 for r in rows) else 1


def print_table(rows, sigterm) -> None:
    head = f"{'scenario':<24}{'accepted':>9}{'stored':>8}{'w/ error':>9}{'lost':>6}"
    print("\n" + head + f"{'settled':>9}{'after':>7}  errors")
    for r in rows:
        print(
            f"{r['name']:<24}{r['accepted']:>9}{r['stored']:>8}{r['with_error']:>9}{r['lost']:>6}"
            f"{r['settle_s']:>8.0f}s{r['reconnected']:>7}  {r['errors'] or '-'}"
        )
    print(
        "\nsettled: seconds from the fault until no reading of the scenario was pending; "
        "after: frames accepted from new sockets opened after the fault (no manual step)"
    )
    for r in rows:
        print(f"  {r['name']}: {r['what']}")
    if sigterm:
        print("server exit after SIGTERM: " + ", ".join(f"{s:.1f} s" for s in sigterm))


def run_quiet_socket(args) -> int:
    """One instructor live socket on a quiet course for N minutes; count its closes."""
    import websockets

    pg_base = args.pg_url
    db = f"affect_quiet_{os.getpid()}"
    pg_admin(pg_base, f"CREATE DATABASE {db}")
    work = Path(tempfile.mkdtemp(prefix="bench-quiet-"))
    redis = PrivateRedis(work)
    redis.start()
    env = dict(
        os.environ,
        DATABASE_URL=pg_base.rsplit("/", 1)[0] + f"/{db}",
        REDIS_URL=redis.url,
        DATA_DIR=str(work),
        PYTHONUNBUFFERED="1",
        ALLOWED_HOSTS="127.0.0.1,localhost",
    )
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "DATA_DIR")})
    (work / "static").mkdir(exist_ok=True)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    course, teacher_cookie, _ = setup_data(0)
    stack = Stack(env, work, free_port(), redis)
    closes: list[tuple[float, int | None]] = []

    async def watch():
        url = f"ws://127.0.0.1:{stack.port}/ws/courses/{course.pk}/live/"
        headers = {"Origin": f"http://127.0.0.1:{stack.port}", "Cookie": teacher_cookie}
        t0 = time.monotonic()
        end = t0 + args.quiet_socket_minutes * 60
        while time.monotonic() < end:
            async with websockets.connect(url, additional_headers=headers) as ws:
                try:
                    while time.monotonic() < end:
                        try:
                            await asyncio.wait_for(ws.recv(), max(0.1, end - time.monotonic()))
                        except TimeoutError:
                            break
                except websockets.ConnectionClosed as e:
                    closes.append((time.monotonic() - t0, e.rcvd.code if e.rcvd else None))

    try:
        stack.start_server()
        asyncio.run(watch())
    finally:
        stack.stop_all()
        redis.stop()
        from django.db import connections

        connections.close_all()
        pg_admin(pg_base, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    print(
        f"quiet live socket, {args.quiet_socket_minutes:g} min on channels-redis: "
        f"{len(closes)} close(s)" + "".join(f"\n  at {t:.1f} s: code {c}" for t, c in closes)
    )
    return 0 if not closes else 1


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--pg-url",
        default=os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL database to connect to for CREATE/DROP DATABASE",
    )
    p.add_argument("--learners", type=int, default=20)
    p.add_argument("--seconds", type=float, default=20, help="streaming per scenario")
    p.add_argument("--settle", type=float, default=120, help="most seconds to wait per scenario")
    p.add_argument("--ttl", type=int, default=90, help="FRAME_TTL_SECONDS for the run")
    p.add_argument("--requeue-after", type=int, default=20)
    p.add_argument("--only", default="", help="comma-separated scenario names")
    p.add_argument("--quiet-socket-minutes", type=float, default=0)
    args = p.parse_args()
    os.environ.pop("DATABASE_URL", None)
    if args.quiet_socket_minutes:
        return run_quiet_socket(args)
    return run_faults(args)


if __name__ == "__main__":
    raise SystemExit(main())
