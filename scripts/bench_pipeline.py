#!/usr/bin/env python
"""End-to-end pipeline benchmark on localhost, with real services.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/affect_bench REDIS_URL=redis://127.0.0.1:6379/9 \
        .venv/bin/python scripts/bench_pipeline.py --learners 20,25,30,40,60 --seconds 30 \
        --workers 1,2

Starts the server (``config.serve.server_argv``: HTTP + WebSocket) and, for each worker count
in ``--workers``, that many Celery workers (solo pool, CPU), then for each load level opens N
learner WebSockets that each capture one real-face 640×480 JPEG per second and send it when
they hold credit (like the browser's recorder: without credit the frame is skipped, never
sent, and a ping asks for credit at most every 2 s), and one instructor WebSocket on the
course's live view. Prints per level: frames offered/s, readings stored/s, frames refused
after their upload (``dropped`` acks), frames the clients skipped, p50/p95 from a frame's
receipt to its reading stored, and the live-summary lag: how old the newest reading an
instructor's summary shows is when it arrives (p50/p95); send→ack: from a frame's send to its
ack, on the client (p50/p95); the CPU the web processes, the workers and the learners' clients
(this process) used over the level, in % of one core; the messages the instructor's live
view got per second (``live/s``); and the load average then. Then where
the workers' time went
(decode, detect, classify, DB, broadcast — from their per-batch timings). A learner socket
the server closes reconnects, as the page does (counted: ``reconn``).

``--modes picture,crop,cues`` runs the same levels (``--learners`` for pictures,
``--device-learners`` for the device modes) with each frame kind in turn, on the same server
and worker: ``picture`` (the JPEG, the server finds the face), ``crop`` (the 48×48 crop the
server would cut, raw, with cues: classified with no detection) and ``cues`` (cues alone:
analysed when accepted, no worker). It prints first the bytes one picture costs on the wire in
each mode. The ``lag`` columns are picture→dashboard: from a frame's receipt to the
instructor's summary that shows it.

``--web-processes N`` serves with N server processes on the one port (``SERVER_WORKERS``):
the web tier, which scales apart from the inference workers (``--workers``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret")

from config.serve import server_argv  # noqa: E402


def django_on_services() -> bool:
    """Django set up on ``DATABASE_URL`` (PostgreSQL) and ``REDIS_URL``, migrated; False (and
    said why) when either is not set: the benchmarks measure the real services."""
    if not os.environ.get("DATABASE_URL") or not os.environ.get("REDIS_URL"):
        print("error: set DATABASE_URL (PostgreSQL) and REDIS_URL", file=sys.stderr)
        return False
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_frames(n: int = 24) -> list[bytes]:
    import cv2

    from ml.data import load_image_folder
    from ml.faces import detect_faces
    from ml.synth import scene

    fer = Path(os.environ.get("FER2013_ROOT", ROOT.parent / "shared/datasets/fer2013"))
    ds = load_image_folder(fer / "validation")
    out = []
    for i in range(len(ds)):
        frame, _ = scene([ds.images[i]], side=200, seed=i)
        if len(detect_faces(frame)) == 1:
            out.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
        if len(out) == n:
            return out
    return out


MODES = ("picture", "crop", "cues")


def device_payloads(jpegs: list[bytes]) -> list[tuple[bytes, dict]]:
    """What a learner's device sends for each picture: the 48×48 crop the server would cut
    (raw bytes) and the cues, the box and the server path's cues measured the server's way
    (head pose and eyes: a learner facing the screen)."""
    import cv2
    import numpy as np

    from ml.faces import detect_faces

    out = []
    for i, data in enumerate(jpegs):
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        faces = detect_faces(img)
        if not faces:  # lost in the JPEG: the device sees the camera's own picture
            continue
        face = faces[0]
        h, w = img.shape[:2]
        x, y, bw, bh = face.box
        cues = {
            "face": True,
            "box": [round(x / w, 4), round(y / h, 4), round(bw / w, 4), round(bh / h, 4)],
            "yaw": round(4.0 - i % 7, 1),
            "pitch": round(-2.0 + i % 5, 1),
            "roll": 1.5,
            "eye_open_left": 0.31,
            "eye_open_right": 0.29,
            "gaze_yaw": -1.2,
            "gaze_pitch": 0.8,
            "center_offset": face.cues["center_offset"],
            "area_fraction": face.cues["area_fraction"],
        }
        out.append((face.crop.tobytes(), cues))
    return out


def frame_builder(mode: str, jpegs: list[bytes], device: list[tuple[bytes, dict]]):
    """``build(seq) -> bytes``: the binary stream message for frame ``seq`` in ``mode``."""

    def message(header: dict, data: bytes) -> bytes:
        h = json.dumps(header, separators=(",", ":")).encode()
        return len(h).to_bytes(4, "big") + h + data

    def build(seq: int) -> bytes:
        if mode == "picture":
            return message({"sequence": seq}, jpegs[seq % len(jpegs)])
        crop, cues = device[seq % len(device)]
        header = {"sequence": seq, "kind": mode, "cues": cues}
        return message(header, crop if mode == "crop" else b"")

    build.kind = mode
    return build


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


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the web server's worker processes), from /proc."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:
                continue
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def cpu_probe(server_pid: int, worker_pids: list[int]):
    """``probe() -> (web CPU s, workers' CPU s, clients' CPU s)`` so far."""

    def probe() -> tuple[float, float, float]:
        web, workers = cpu_seconds(process_tree(server_pid)), cpu_seconds(worker_pids)
        return web, workers, time.process_time()  # the learners' clients: this process

    return probe


async def run_level(port, course, teacher_cookie, learners, build, seconds, probe=None):
    from datetime import datetime

    import websockets
    from asgiref.sync import sync_to_async

    from tutoring.services import session_end, session_start

    sessions = [await sync_to_async(session_start)(learner=u, course=course) for u, _ in learners]
    lags: list[float] = []
    ack_waits: list[float] = []  # seconds from a frame's send to its ack
    live_msgs = [0]  # messages the instructor's live view got while measured
    acks = {"accepted": 0, "dropped": 0, "rejected": 0, "duplicate": 0, "skipped": 0}
    acks["reconnects"] = 0
    url = f"ws://127.0.0.1:{port}"
    headers = {"Origin": f"http://127.0.0.1:{port}"}
    stop = asyncio.Event()
    measuring = [False]
    query = "?kind=cues" if build.kind == "cues" else ""

    async def instructor():
        async with websockets.connect(
            f"{url}/ws/courses/{course.pk}/live/",
            additional_headers={**headers, "Cookie": teacher_cookie},
            max_size=2**24,
        ) as ws:
            while True:
                msg = json.loads(await ws.recv())
                now = time.time()
                if measuring[0]:
                    live_msgs[0] += 1
                if msg.get("type") == "summary" and measuring[0]:
                    for s in msg.get("sessions", []):
                        if s.get("last_analysed_at"):
                            t = datetime.fromisoformat(s["last_analysed_at"]).timestamp()
                            lags.append(now - t)

    async def learner(session, cookie, offset):
        await asyncio.sleep(offset)
        seq = 0
        next_t = last_ping = time.monotonic()
        while not stop.is_set():
            try:
                async with websockets.connect(
                    # a cues-only client says so: its first credit is for cues frames
                    f"{url}/ws/sessions/{session.pk}/stream/{query}",
                    additional_headers={**headers, "Cookie": cookie},
                    max_size=2**24,
                ) as ws:
                    ready = json.loads(await ws.recv())
                    credit = [ready["credit"]]
                    seq = max(seq, ready["next_sequence"])
                    sent_at: dict[int, float] = {}

                    async def reader(ws=ws, credit=credit, sent_at=sent_at):
                        async for raw in ws:
                            m = json.loads(raw)
                            if "credit" in m:
                                credit[0] = m["credit"]
                            if m.get("type") == "ack":
                                acks[m["status"]] = acks.get(m["status"], 0) + 1
                                t = sent_at.pop(m.get("sequence"), None)
                                if t is not None and measuring[0]:
                                    ack_waits.append(time.monotonic() - t)

                    rt = asyncio.create_task(reader())
                    while not stop.is_set() and not rt.done():
                        if credit[0] > 0:
                            sent_at[seq] = time.monotonic()
                            await ws.send(build(seq))
                            credit[0] -= 1
                            seq += 1
                        else:
                            # like the browser: skip the frame, ask for credit now and then
                            acks["skipped"] = acks.get("skipped", 0) + 1
                            if time.monotonic() - last_ping > 2:
                                last_ping = time.monotonic()
                                await ws.send(json.dumps({"type": "ping"}))
                        next_t += 1.0
                        await asyncio.sleep(max(0.0, next_t - time.monotonic()))
                    if stop.is_set():
                        await asyncio.sleep(5)  # let in-flight frames finish
                    rt.cancel()
            except (OSError, websockets.ConnectionClosed):
                pass
            if not stop.is_set():  # closed by the server (e.g. 1011): reconnect, as the page does
                acks["reconnects"] = acks.get("reconnects", 0) + 1
                await asyncio.sleep(0.5)

    inst = asyncio.create_task(instructor())
    await asyncio.sleep(0.5)
    t0 = time.time()
    cpu0 = probe() if probe else (0.0, 0.0, 0.0)
    measuring[0] = True
    tasks = [
        asyncio.create_task(learner(s, c, i / len(sessions)))
        for i, (s, (_, c)) in enumerate(zip(sessions, learners, strict=True))
    ]
    await asyncio.sleep(seconds)
    stop.set()
    t1 = time.time()
    cpu1 = probe() if probe else (0.0, 0.0, 0.0)
    cpu = tuple(100 * (b - a) / (t1 - t0) for a, b in zip(cpu0, cpu1, strict=True))
    live_rate = live_msgs[0] / (t1 - t0)
    await asyncio.gather(*tasks, return_exceptions=True)
    measuring[0] = False
    inst.cancel()
    for s in sessions:
        await sync_to_async(session_end)(session=s)
    return sessions, t0, t1, lags, acks, ack_waits, cpu, live_rate


def readings_stored(sessions, t0, t1) -> list[float]:
    """Seconds from receipt to stored reading, for each frame received in [t0, t1) that
    has one."""
    from datetime import UTC, datetime

    from emotion.models import Reading

    rows = Reading.objects.filter(
        session__in=sessions,
        analysed_at__isnull=False,
        received_at__gte=datetime.fromtimestamp(t0, UTC),
        received_at__lt=datetime.fromtimestamp(t1, UTC),
    ).values_list("received_at", "analysed_at")
    return [(a - r).total_seconds() for r, a in rows]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] * 1000


def worker_timings(logs: list[Path], start: dict) -> tuple[dict, int, int]:
    totals: dict[str, float] = {}
    n_batches = n_frames = 0
    lines = [x for log in logs for x in log.read_text().splitlines()[start.get(log, 0) :]]
    for line in lines:
        m = re.search(r"batch analysed (\{.*\})", line)
        if m:
            d = json.loads(m.group(1))
            n_batches += 1
            n_frames += d["analysed"]
            for k, v in d.items():
                if k.endswith("_s"):
                    totals[k] = totals.get(k, 0.0) + v
    return totals, n_batches, n_frames


def bench_env() -> dict:
    return dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        THROTTLE_USER="100000/min",
    )


def start_workers(n: int, env: dict, logs: Path, port: int) -> list[tuple]:
    out = []
    for i in range(n):
        log = logs / f"worker-{i}.log"
        log.write_text("")
        cmd = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default,gpu"]
        cmd += ["-P", "solo", "-l", "info", "-n", f"bench-{port}-{i}@%h"]
        # a worker keeps its database connection (docs/configuration.md: DB_CONN_MAX_AGE)
        wenv = {"DB_CONN_MAX_AGE": "60", **env}
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=wenv, stdout=log.open("a"), stderr=subprocess.STDOUT
        )
        out.append((proc, log))
    return out


def wait_ready(port: int, worker_logs: list[Path], timeout: float = 300) -> None:
    """Until the server answers and every worker says it is ready (a loaded machine takes a
    while to import them: a level started before would measure start-up)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=5)
        except OSError:
            time.sleep(0.5)
            continue
        if all(" ready." in log.read_text() for log in worker_logs):
            return
        time.sleep(0.5)
    raise SystemExit("error: the server or a worker did not start in time")


def stop_workers(workers) -> None:
    for proc, _ in workers:
        proc.terminate()
    for proc, _ in workers:
        proc.wait(30)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--learners", default="20,25,30,40,60", help="levels for full pictures")
    p.add_argument(
        "--modes",
        default="picture",
        help="frame kinds to run, in order: picture (the server finds the face), crop "
        "(48×48 crop + cues from the device), cues (cues alone)",
    )
    p.add_argument(
        "--device-learners",
        default="",
        help="levels for crop and cues frames (default: --learners)",
    )
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument(
        "--web-processes",
        type=int,
        default=1,
        help="server processes behind the one port (SERVER_WORKERS); the web tier scales "
        "apart from the inference workers",
    )
    p.add_argument("--workers", default="1", help="worker counts to run every level with: 1,2")
    args = p.parse_args()
    if not django_on_services():
        return 2
    modes = args.modes.split(",")
    if any(m not in MODES for m in modes):
        print(f"error: --modes takes {', '.join(MODES)}", file=sys.stderr)
        return 2
    args.device_learners = args.device_learners or args.learners
    levels = [int(x) for x in f"{args.learners},{args.device_learners}".split(",")]
    course, teacher_cookie, learners = setup_data(max(levels))
    jpegs = make_frames()
    device = device_payloads(jpegs)
    frames = {m: frame_builder(m, jpegs, device) for m in modes}
    print_wire_bytes(modes, frames, len(device))
    port = free_port()
    logs = ROOT / ".data" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**bench_env(), "SERVER_WORKERS": str(args.web_processes)}
    server = subprocess.Popen(
        server_argv("127.0.0.1", port),
        cwd=ROOT,
        env=env,
        stdout=(logs / "server.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    args.server_pid = server.pid
    workers = []
    try:
        for n_workers in [int(x) for x in args.workers.split(",")]:
            workers = start_workers(n_workers, env, logs, port)
            wait_ready(port, [log for _, log in workers])
            run_workers(n_workers, workers, port, course, teacher_cookie, learners, frames, args)
            stop_workers(workers)
            workers = []
    finally:
        server.terminate()
        stop_workers(workers)
        server.wait(10)
    return 0


def print_wire_bytes(modes, frames, n: int) -> None:
    """Bytes one picture costs on the wire in each mode (the binary stream message: 4-byte
    length, JSON header, payload), averaged over the benchmark's pictures."""
    print("bytes on the wire per picture (stream message: length + JSON header + payload):")
    for mode in modes:
        sizes = [len(frames[mode](10_000 + i)) for i in range(n)]
        print(f"  {mode:>8}: {sum(sizes) / n:8.0f} bytes (min {min(sizes)}, max {max(sizes)})")


def run_workers(n_workers, workers, port, course, teacher_cookie, learners, frames, args):
    for mode, build in frames.items():
        levels = args.learners if mode == "picture" else args.device_learners
        run_mode(
            mode, n_workers, workers, port, course, teacher_cookie, learners, build, levels, args
        )


def run_mode(mode, n_workers, workers, port, course, teacher_cookie, learners, build, levels, args):
    levels = [int(x) for x in levels.split(",")]
    probe = cpu_probe(args.server_pid, [proc.pid for proc, _ in workers])
    what = {
        "picture": "640×480 JPEG, one face: the server finds it",
        "crop": "48×48 crop + cues from the device",
        "cues": "cues alone, no image",
    }[mode]
    print(
        f"\n{mode}: {n_workers} CPU worker(s) (solo pool), {args.web_processes} web "
        f"process(es) on :{port}, "
        f"{os.cpu_count()} cores, {args.seconds:.0f} s per level, 1 frame/s per learner ({what})"
    )
    print(
        f"{'learners':>8}{'offered/s':>10}{'stored/s':>10}{'refused':>9}{'skipped':>9}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'lag p50':>9}{'lag p95':>9}{'ack p50':>9}{'ack p95':>9}"
        f"{'web cpu':>9}{'wkr cpu':>9}{'cli cpu':>9}{'live/s':>7}{'load':>6}{'batches':>9}{'fr/batch':>9}{'reconn':>7}"
    )
    # warm-up (model load, connection pools), not reported
    asyncio.run(run_level(port, course, teacher_cookie, learners[:2], build, 4))
    shares = []
    wlogs = [log for _, log in workers]
    for n in levels:
        start = {log: len(log.read_text().splitlines()) for log in wlogs}
        sessions, t0, t1, lags, acks, waits, cpu, live_rate = asyncio.run(
            run_level(port, course, teacher_cookie, learners[:n], build, args.seconds, probe)
        )
        stored = readings_stored(sessions, t0, t1)
        totals, nb, nf = worker_timings(wlogs, start)
        print(
            f"{n:>8}{n:>10.0f}{len(stored) / (t1 - t0):>10.1f}{acks['dropped']:>9}"
            f"{acks['skipped']:>9}{pct(stored, 0.5):>9.0f}{pct(stored, 0.95):>9.0f}"
            f"{pct(lags, 0.5):>9.0f}{pct(lags, 0.95):>9.0f}{pct(waits, 0.5):>9.0f}"
            f"{pct(waits, 0.95):>9.0f}{cpu[0]:>8.0f}%{cpu[1]:>8.0f}%{cpu[2]:>8.0f}%"
            f"{live_rate:>7.1f}{os.getloadavg()[0]:>6.1f}"
            f"{nb:>9}{(nf / nb if nb else 0):>9.1f}{acks['reconnects']:>7}",
            flush=True,
        )
        shares.append((n, totals, nf))
    print("where the workers' time goes (share of per-batch total; ms per frame):")
    keys = ["fetch_s", "decode_s", "detect_s", "classify_s", "db_s", "broadcast_s"]
    print(f"{'learners':>8}" + "".join(f"{k[:-2]:>16}" for k in keys))
    for n, totals, nf in shares:
        tot = totals.get("total_s", 0) or 1
        cells = "".join(
            f"{100 * totals.get(k, 0) / tot:>7.1f}% {1000 * totals.get(k, 0) / max(nf, 1):>6.1f}ms"
            for k in keys
        )
        print(f"{n:>8}{cells}")


if __name__ == "__main__":
    raise SystemExit(main())
