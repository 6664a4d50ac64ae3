#!/usr/bin/env python
"""The server's memory under a long mixed load, on localhost, with real services.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/affect_bench REDIS_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python scripts/bench_memory.py --minutes 10

Starts the server (``config.serve.server_argv``) and one Celery worker, then for ``--minutes``
streams 30 learners (one real-face JPEG per second each, honouring credit, as in
``bench_pipeline.py``) while a prober sends, in a loop, the bad inputs of issue 20's probe:
oversized bodies with a Content-Length and chunked without one, before authentication;
malformed multipart; deeply nested JSON; bad tokens; a garbage image upload; unknown HTTP and
WebSocket routes; bad images, bad headers and nested JSON on a stream socket. Everything goes
to 127.0.0.1. The server's RSS (its process and any children, from /proc) is sampled every
10 s; prints the series, the answers the bad inputs got, and how flat the RSS stayed: the
median of the last minute's samples against the second minute's (the first is start-up), and
the highest sample (taken while an oversized body was held).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret")

import bench_pipeline as bp  # noqa: E402

from config.serve import server_argv  # noqa: E402

SAMPLE_S = 10
LEARNERS = 30


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            out += [int(x) for x in task.read_text().split()]
    return out


def tree_rss_mb(pid: int) -> float:
    """RSS of ``pid`` and its descendants (a server that forks workers counts whole)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
        todo += _children(p)
    return total / 1024


async def http(port: int, head: str, body_chunks=(), timeout: float = 60) -> str:
    """Send a raw HTTP/1.1 request; the answer's status code, or what went wrong."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    except (OSError, TimeoutError) as e:
        return type(e).__name__
    try:
        writer.write(head.encode())
        for chunk in body_chunks:
            writer.write(chunk)
            await writer.drain()
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        await asyncio.wait_for(reader.read(), timeout)
        parts = line.decode(errors="replace").split()
        return parts[1] if len(parts) > 1 else "no answer"
    except (OSError, TimeoutError) as e:  # the server closed early (e.g. a 413 mid-upload)
        return type(e).__name__
    finally:
        writer.close()


def request(method: str, path: str, port: int, headers: dict, length: int | None) -> str:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if length is None:
        lines.append("Transfer-Encoding: chunked")
    else:
        lines.append(f"Content-Length: {length}")
    return "\r\n".join(lines) + "\r\n\r\n"


def sized(total: int, piece: int = 1 << 20):
    while total > 0:
        n = min(piece, total)
        yield b"\0" * n
        total -= n


def chunked(total: int, piece: int = 1 << 20):
    for part in sized(total, piece):
        yield f"{len(part):x}\r\n".encode() + part + b"\r\n"
    yield b"0\r\n\r\n"


def probes(port: int, big: int, session_id: int):
    """(name, coroutine factory) for each bad input, in the order they are sent."""
    bad_token = {"Authorization": "Token " + "x" * 40}
    form = {"Content-Type": "multipart/form-data; boundary=zzz"}
    js = {"Content-Type": "application/json"}
    nested = b"[" * 50_000 + b"]" * 50_000
    garbage = (
        b'--zzz\r\nContent-Disposition: form-data; name="frames"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + os.urandom(20_000) + b"\r\n--zzz--\r\n"
    )
    malformed = b'--zzz\r\nContent-Disposition: form-data; name="x"\r\n\r\nno end'

    def one(method, path, headers, body):
        return lambda: http(port, request(method, path, port, headers, len(body)), [body])

    return [
        (
            "oversized multipart, anonymous",
            lambda: http(port, request("POST", "/api/auth/token/", port, form, big), sized(big)),
        ),
        (
            "oversized chunked, anonymous",
            lambda: http(
                port,
                request("POST", "/accounts/login/", port, {"Content-Type": "text/plain"}, None),
                chunked(big),
            ),
        ),
        ("malformed multipart", one("POST", "/api/auth/token/", form, malformed)),
        ("nested JSON, anonymous", one("POST", "/api/auth/token/", js, nested)),
        ("nested JSON, bad token", one("POST", "/api/sessions/", {**js, **bad_token}, nested)),
        ("bad token", one("GET", "/api/courses/", bad_token, b"")),
        (
            "garbage image, bad token",
            one("POST", f"/api/sessions/{session_id}/frames/", {**form, **bad_token}, garbage),
        ),
        ("unknown route", one("GET", "/nope/", {}, b"")),
        ("unknown API route", one("GET", "/api/nope/", {}, b"")),
    ]


async def ws_probes(port: int, session_id: int, cookie: str, counts: collections.Counter):
    import websockets

    url, origin = f"ws://127.0.0.1:{port}", {"Origin": f"http://127.0.0.1:{port}"}
    for path in ("/ws/nope/", "/ws/sessions/abc/stream/"):
        try:
            async with websockets.connect(url + path, additional_headers=origin) as ws:
                await asyncio.wait_for(ws.recv(), 5)
            counts[f"ws {path}"] += 1
        except Exception as e:
            counts[f"ws {path}: {type(e).__name__}"] += 1
    try:
        async with websockets.connect(
            f"{url}/ws/sessions/{session_id}/stream/",
            additional_headers={**origin, "Cookie": cookie},
        ) as ws:
            await asyncio.wait_for(ws.recv(), 5)  # ready
            header = json.dumps({"sequence": int(time.time())}).encode()
            for msg in (
                len(header).to_bytes(4, "big") + header + os.urandom(30_000),  # bad image
                len(header).to_bytes(4, "big") + header + b"\xff\xd8\xff" + b"\0" * 1000,
                b"\xff\xff\xff\xff" + os.urandom(100),  # bad header length
                "[" * 50_000 + "]" * 50_000,  # nested JSON text
            ):
                await ws.send(msg)
                reply = {"type": "credit"}
                while reply.get("type") == "credit":  # credit pushed meanwhile: not the answer
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                counts[f"ws stream bad input: {reply.get('status') or reply.get('type')}"] += 1
    except Exception as e:
        counts[f"ws stream bad input: {type(e).__name__}"] += 1


async def prober(port, big, session_id, cookie, stop: asyncio.Event, counts):
    while not stop.is_set():
        for name, make in probes(port, big, session_id):
            try:
                answer = await asyncio.wait_for(make(), 60)
            except TimeoutError:
                answer = "no answer in 60 s"
            counts[f"{name}: {answer}"] += 1
            if stop.is_set():
                return
        await ws_probes(port, session_id, cookie, counts)
        await asyncio.sleep(1)


async def sampler(pid: int, stop: asyncio.Event, series: list):
    t0 = time.monotonic()
    while not stop.is_set():
        rss = tree_rss_mb(pid)
        series.append((time.monotonic() - t0, rss))
        print(f"  {series[-1][0]:6.0f} s  {rss:8.1f} MB", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_S)


async def run(port, pid, course, teacher_cookie, learners, frames, seconds, big, probe_user):
    from asgiref.sync import sync_to_async

    from tutoring.services import session_end, session_start

    user, cookie = probe_user
    probe_session = await sync_to_async(session_start)(learner=user, course=course)
    stop = asyncio.Event()
    series: list = []
    counts: collections.Counter = collections.Counter()
    sample = asyncio.create_task(sampler(pid, stop, series))
    probe = asyncio.create_task(prober(port, big, probe_session.pk, cookie, stop, counts))
    _, t0, t1, lags, acks = await bp.run_level(
        port, course, teacher_cookie, learners, frames, seconds
    )
    stop.set()
    await asyncio.gather(sample, probe, return_exceptions=True)
    await sync_to_async(session_end)(session=probe_session)
    return series, counts, acks


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--oversized-mb", type=int, default=30, help="size of each oversized body")
    args = p.parse_args()
    if not bp.django_on_services():
        return 2
    course, teacher_cookie, learners = bp.setup_data(LEARNERS + 1)
    frames = bp.make_frames()
    port = bp.free_port()
    logs = ROOT / ".data" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    env = bp.bench_env()
    server = subprocess.Popen(
        server_argv("127.0.0.1", port),
        cwd=ROOT,
        env=env,
        stdout=(logs / "server-memory.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    workers = bp.start_workers(1, env, logs, port)
    try:
        time.sleep(8)
        print(
            f"server on :{port} (pid {server.pid}), one worker, {LEARNERS} learners streaming "
            f"for {args.minutes:g} min plus bad inputs ({args.oversized_mb} MB bodies); RSS:"
        )
        series, counts, acks = asyncio.run(
            run(
                port,
                server.pid,
                course,
                teacher_cookie,
                learners[:LEARNERS],
                frames,
                args.minutes * 60,
                args.oversized_mb << 20,
                learners[LEARNERS],
            )
        )
    finally:
        server.terminate()
        bp.stop_workers(workers)
        server.wait(10)
    print("\nbad inputs sent, by answer:")
    for key, n in sorted(counts.items()):
        print(f"  {n:5d}  {key}")
    print(f"stream acks: {dict(acks)}")
    rss = [r for _, r in series]
    per_min = 60 // SAMPLE_S
    # after the first minute (imports, pools, the model) vs the last minute: medians, so that a
    # sample taken while an oversized body was held counts as the peak it is, not as growth
    base = statistics.median(rss[per_min : 2 * per_min] or rss[-1:])
    end = statistics.median(rss[-per_min:])
    drift = abs(end - base) / base * 100
    peak = max(rss[per_min:] or rss)
    print(
        f"RSS {rss[0]:.0f} MB at start, {base:.0f} MB in the second minute, {end:.0f} MB in the "
        f"last (median of its samples); highest sample after the first minute {peak:.0f} MB "
        f"({(peak - base) / base * 100:+.0f} %, bodies in flight)"
    )
    print(f"flat within {drift:.1f} % (last minute vs second minute)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
