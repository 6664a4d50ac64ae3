#!/usr/bin/env python
"""End-to-end pipeline benchmark on localhost, with real services.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/affect_bench REDIS_URL=redis://127.0.0.1:6379/9 \
        .venv/bin/python scripts/bench_pipeline.py --learners 10,30,100 --seconds 30

Starts the server (HTTP + WebSocket) and ONE Celery worker (solo pool, CPU) as subprocesses, then
for each load level opens N learner WebSockets that each send one real-face 640×480 JPEG per
second (honouring the server's credit window) and one instructor WebSocket on the course's
live view. Prints sustained throughput (frames accepted → readings stored), latency from the
learner's send (≈ server receipt on localhost) to the instructor socket message that covers
that frame (p50/p95), frames skipped for lack of credit (backpressure), and where the worker's time went
(decode, detect, classify, DB, broadcast — from the worker's per-batch timings).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret")

from config.serve import server_argv  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_frames(n: int = 24) -> list[bytes]:
    import cv2

    from ml.data import load_image_folder
    from ml.faces import detect_faces
    from ml.synth import scene

    ds = load_image_folder(ROOT.parent / "shared/datasets/fer2013/validation")
    out = []
    for i in range(len(ds)):
        frame, _ = scene([ds.images[i]], side=200, seed=i)
        if len(detect_faces(frame)) == 1:
            out.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
        if len(out) == n:
            return out
    return out


def setup_data(n_learners: int):
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from tutoring.models import Course, User
    from tutoring.services import consent_grant, course_create, course_enroll, user_create

    def user(name, role):
        u = User.objects.filter(username=name).first()
        return u or user_create(username=name, password="bench-pass-123", role=role)

    teacher = user("bench-instructor", "instructor")
    course = Course.objects.filter(title="Benchmark").first() or course_create(
        title="Benchmark", instructors=[teacher]
    )
    learners = []
    for i in range(n_learners):
        u = user(f"bench-learner-{i:03d}", "learner")
        course_enroll(course=course, learner=u)
        if not u.consents.filter(course=course, revoked_at__isnull=True).exists():
            consent_grant(learner=u, course=course, engagement=True, emotion=True)
        learners.append(u)

    def cookie(u):
        s = SessionStore()
        s[SESSION_KEY] = str(u.pk)
        s[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        s[HASH_SESSION_KEY] = u.get_session_auth_hash()
        s.create()
        return f"sessionid={s.session_key}"

    return course, cookie(teacher), [(u, cookie(u)) for u in learners]


async def run_level(port, course, teacher_cookie, learners, frames, seconds):
    import websockets
    from asgiref.sync import sync_to_async

    from tutoring.services import session_end, session_start

    sessions = [await sync_to_async(session_start)(learner=u, course=course) for u, _ in learners]
    sent: dict[tuple[int, int], float] = {}
    latencies: list[float] = []
    acks = {"accepted": 0, "dropped": 0, "rejected": 0, "duplicate": 0, "skipped": 0}
    url = f"ws://127.0.0.1:{port}"
    headers = {"Origin": f"http://127.0.0.1:{port}"}
    stop = asyncio.Event()

    async def instructor():
        async with websockets.connect(
            f"{url}/ws/courses/{course.pk}/live/",
            additional_headers={**headers, "Cookie": teacher_cookie},
            max_size=2**24,
        ) as ws:
            while True:
                msg = json.loads(await ws.recv())
                now = time.monotonic()
                if msg.get("type") == "summary":
                    for s in msg.get("sessions", []):
                        for seq in s.get("analysed_sequences", []):
                            t = sent.pop((s["session"], seq), None)
                            if t is not None:
                                latencies.append(now - t)

    async def learner(session, cookie, offset):
        async with websockets.connect(
            f"{url}/ws/sessions/{session.pk}/stream/",
            additional_headers={**headers, "Cookie": cookie},
            max_size=2**24,
        ) as ws:
            ready = json.loads(await ws.recv())
            credit = [ready["credit"]]

            async def reader():
                async for raw in ws:
                    m = json.loads(raw)
                    if "credit" in m:
                        credit[0] = m["credit"]
                    if m.get("type") == "ack":
                        acks[m["status"]] = acks.get(m["status"], 0) + 1

            rt = asyncio.create_task(reader())
            await asyncio.sleep(offset)
            seq = 0
            next_t = time.monotonic()
            while not stop.is_set():
                if credit[0] > 0:
                    header = json.dumps({"sequence": seq}).encode()
                    sent[(session.pk, seq)] = time.monotonic()
                    await ws.send(
                        len(header).to_bytes(4, "big") + header + frames[seq % len(frames)]
                    )
                    credit[0] -= 1
                else:
                    # like the browser: skip the frame, ask for fresh credit
                    acks["skipped"] = acks.get("skipped", 0) + 1
                    await ws.send(json.dumps({"type": "ping"}))
                seq += 1
                next_t += 1.0
                await asyncio.sleep(max(0.0, next_t - time.monotonic()))
            await asyncio.sleep(5)  # let in-flight frames finish
            rt.cancel()

    inst = asyncio.create_task(instructor())
    await asyncio.sleep(0.5)
    t0 = time.time()
    tasks = [
        asyncio.create_task(learner(s, c, i / len(sessions)))
        for i, (s, (_, c)) in enumerate(zip(sessions, learners, strict=True))
    ]
    await asyncio.sleep(seconds)
    stop.set()
    t1 = time.time()
    await asyncio.gather(*tasks, return_exceptions=True)
    inst.cancel()
    for s in sessions:
        await sync_to_async(session_end)(session=s)
    return sessions, t0, t1, latencies, acks


def readings_stored(sessions, t0, t1) -> int:
    from datetime import UTC, datetime

    from emotion.models import Reading

    return Reading.objects.filter(
        session__in=sessions,
        analysed_at__isnull=False,
        received_at__gte=datetime.fromtimestamp(t0, UTC),
        received_at__lt=datetime.fromtimestamp(t1, UTC),
    ).count()


def worker_timings(log: Path, start_line: int) -> tuple[dict, int, int]:
    lines = log.read_text().splitlines()
    totals: dict[str, float] = {}
    n_batches = n_frames = 0
    for line in lines[start_line:]:
        m = re.search(r"batch analysed (\{.*\})", line)
        if m:
            d = json.loads(m.group(1))
            n_batches += 1
            n_frames += d["analysed"]
            for k, v in d.items():
                if k.endswith("_s"):
                    totals[k] = totals.get(k, 0.0) + v
    return totals, n_batches, n_frames


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--learners", default="10,30,100")
    p.add_argument("--seconds", type=float, default=30)
    args = p.parse_args()
    if not os.environ.get("DATABASE_URL") or not os.environ.get("REDIS_URL"):
        print("error: set DATABASE_URL (PostgreSQL) and REDIS_URL", file=sys.stderr)
        return 2
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    levels = [int(x) for x in args.learners.split(",")]
    course, teacher_cookie, learners = setup_data(max(levels))
    frames = make_frames()
    port = free_port()
    logs = ROOT / ".data" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    wlog = logs / "worker.log"
    wlog.write_text("")
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        THROTTLE_USER="100000/min",
    )
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            "default,gpu",
            "-P",
            "solo",
            "-l",
            "info",
            "-n",
            f"bench-{port}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=wlog.open("a"),
        stderr=subprocess.STDOUT,
    )
    server = subprocess.Popen(
        server_argv("127.0.0.1", port),
        cwd=ROOT,
        env=env,
        stdout=(logs / "server.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(8)
        print(
            f"one CPU worker (solo pool), server on :{port}, {os.cpu_count()} cores, "
            f"{args.seconds:.0f} s per level, 1 frame/s per learner (640×480 JPEG, one face)"
        )
        print(
            f"{'learners':>8}{'offered/s':>10}{'stored/s':>10}{'skipped':>9}{'p50 ms':>9}"
            f"{'p95 ms':>9}{'batches':>9}{'frames/batch':>13}"
        )
        shares = []
        # warm-up (model load, connection pools), not reported
        asyncio.run(run_level(port, course, teacher_cookie, learners[:2], frames, 4))
        for n in levels:
            start_line = len(wlog.read_text().splitlines())
            sessions, t0, t1, lat, acks = asyncio.run(
                run_level(port, course, teacher_cookie, learners[:n], frames, args.seconds)
            )
            stored = readings_stored(sessions, t0, t1)
            totals, nb, nf = worker_timings(wlog, start_line)
            p50 = statistics.median(lat) * 1000 if lat else float("nan")
            p95 = statistics.quantiles(lat, n=20)[-1] * 1000 if len(lat) >= 20 else float("nan")
            print(
                f"{n:>8}{n:>10.0f}{stored / (t1 - t0):>10.1f}{acks['dropped'] + acks['skipped']:>9}{p50:>9.0f}"
                f"{p95:>9.0f}{nb:>9}{(nf / nb if nb else 0):>13.1f}"
            )
            shares.append((n, totals, nf))
        print("\nwhere the worker's time goes (share of per-batch total; ms per frame):")
        keys = ["fetch_s", "decode_s", "detect_s", "classify_s", "db_s", "broadcast_s"]
        print(f"{'learners':>8}" + "".join(f"{k[:-2]:>16}" for k in keys))
        for n, totals, nf in shares:
            tot = totals.get("total_s", 0) or 1
            cells = "".join(
                f"{100 * totals.get(k, 0) / tot:>7.1f}% {1000 * totals.get(k, 0) / max(nf, 1):>6.1f}ms"
                for k in keys
            )
            print(f"{n:>8}{cells}")
    finally:
        server.terminate()
        worker.terminate()
        server.wait(10)
        worker.wait(20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
