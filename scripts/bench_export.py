#!/usr/bin/env python
"""Memory and time of a learner's data export (GET /api/me/export/), on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/affect_bench \\
        .venv/bin/python scripts/bench_export.py --readings 50000 --crop-every 5

Creates (or reuses) a learner whose history has N readings at 2 frames/s, split into one-hour
sessions, every ``--crop-every``-th with a kept 48×48 grayscale PNG face crop (random pixels:
the worst case for the PNG's size), then requests the export through the project's ASGI
application, as the server hands a request over, in a fresh process per measurement:

* ``rss``: time to the first and to the last byte, and the process's peak RSS during the
  request above its RSS before it (Linux: the peak is reset through /proc/self/clear_refs);
* ``tracemalloc``: the peak of Python allocations during the request (slower: not timed).

The body is counted and hashed, not kept: the SHA-256 shows that two versions of the code
answer the same bytes. Needs only PostgreSQL (no Redis, no worker).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import subprocess
import sys
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret")

USERNAME = "bench-export-learner"
FPS = 2.0
SESSION_S = 3600


def crop_png(seed: int) -> bytes:
    import cv2
    import numpy as np

    pixels = np.random.default_rng(seed).integers(0, 256, (48, 48), dtype=np.uint8)
    return cv2.imencode(".png", pixels)[1].tobytes()


def setup_data(n: int, crop_every: int) -> str:
    """The bench learner with exactly ``n`` readings (recreated when the count differs)."""
    from django.db import transaction
    from django.utils import timezone

    from emotion.models import Reading
    from ml.classes import EMOTIONS
    from tutoring.models import Course, LearnerSession, User
    from tutoring.services import (
        api_token_create,
        consent_grant,
        course_create,
        course_enroll,
        user_create,
    )

    def user(name, role):
        u = User.objects.filter(username=name).first()
        return u or user_create(username=name, password="bench-pass-123", role=role)

    teacher = user("bench-export-instructor", "instructor")
    learner = user(USERNAME, "learner")
    course = Course.objects.filter(title="Export benchmark").first() or course_create(
        title="Export benchmark", instructors=[teacher], keep_face_crops=True
    )
    course_enroll(course=course, learner=learner)
    consent = learner.consents.filter(course=course, revoked_at__isnull=True).first()
    consent = consent or consent_grant(learner=learner, course=course, emotion=True)
    have = Reading.objects.filter(session__learner=learner)
    crops = have.filter(face_crop__isnull=False).count()
    if have.count() != n or crops != (n + crop_every - 1) // crop_every:
        LearnerSession.objects.filter(learner=learner).delete()
        t0 = timezone.now() - timedelta(seconds=n / FPS + SESSION_S)
        per_session = int(SESSION_S * FPS)
        pngs = [crop_png(i) for i in range(64)]
        probs = {e: round(1 / len(EMOTIONS), 4) for e in EMOTIONS}
        started = time.perf_counter()
        for first in range(0, n, per_session):
            start = t0 + timedelta(seconds=first / FPS)
            count = min(per_session, n - first)
            with transaction.atomic():
                s = LearnerSession.objects.create(
                    learner=learner,
                    course=course,
                    consent=consent,
                    status="ended",
                    started_at=start,
                    ended_at=start + timedelta(seconds=count / FPS),
                    end_reason="ended",
                    last_frame_at=start + timedelta(seconds=(count - 1) / FPS),
                    emotion_enabled=True,
                    client_info={"ua": "bench", "w": 640, "h": 480},
                )
                rows = []
                for i in range(count):
                    k = first + i
                    at = start + timedelta(seconds=i / FPS)
                    failed = k % 97 == 0
                    rows.append(
                        Reading(
                            session=s,
                            sequence=i,
                            captured_at=at,
                            received_at=at + timedelta(milliseconds=40),
                            analysed_at=at + timedelta(milliseconds=300),
                            error="frame_expired" if failed else "",
                            face_found=not failed,
                            box=None if failed else [220, 140, 180, 180],
                            cues={} if failed else {"center_offset": 0.08, "area_fraction": 0.1},
                            attentive=not failed,
                            probs=None if failed else probs,
                            label=None if failed else "neutral",
                            confidence=None if failed else 0.1429,
                            face_crop=pngs[k % len(pngs)] if k % crop_every == 0 else None,
                        )
                    )
                Reading.objects.bulk_create(rows, batch_size=2000)
        print(f"created {n} readings in {time.perf_counter() - started:.1f} s")
    return api_token_create(user=learner)[1]


async def request_export(token: str, on_start=None) -> dict:
    """GET /api/me/export/ through config.asgi.application; the body is counted and hashed."""
    from config.asgi import application

    got = {"status": None, "bytes": 0, "sha256": hashlib.sha256(), "ttfb": None}
    requested = False
    never = asyncio.Event()

    async def receive():
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await never.wait()  # the client stays until the end
        return {"type": "http.disconnect"}

    t0 = time.perf_counter()

    async def send(message):
        if message["type"] == "http.response.start":
            got["status"] = message["status"]
        elif message.get("body"):
            if got["ttfb"] is None:
                got["ttfb"] = time.perf_counter() - t0
            got["bytes"] += len(message["body"])
            got["sha256"].update(message["body"])

    path = "/api/me/export/"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"localhost"), (b"authorization", f"Token {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("localhost", 80),
    }
    await application(scope, receive, send)
    got["seconds"] = time.perf_counter() - t0
    got["sha256"] = got["sha256"].hexdigest()
    return got


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def child(mode: str, token: str) -> dict:
    """One measurement, in this (fresh) process."""
    import django

    django.setup()
    asyncio.run(request_export("warm-up-not-a-token"))  # loads the stack; 401
    gc.collect()
    out = {"mode": mode}
    if mode == "tracemalloc":
        tracemalloc.start()
        got = asyncio.run(request_export(token))
        out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    else:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
            reset = True
        except OSError:
            reset = False
        before = _status_kb("VmRSS")
        got = asyncio.run(request_export(token))
        out["rss_growth_mb"] = (_status_kb("VmHWM") - before) / 1024
        out["hwm_reset"] = reset
        out["seconds"], out["ttfb_s"] = got["seconds"], got["ttfb"]
    out.update(status=got["status"], bytes=got["bytes"], sha256=got["sha256"])
    return out


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--readings", type=int, default=50_000)
    p.add_argument("--crop-every", type=int, default=5, help="a kept crop every Nth reading")
    p.add_argument("--repeat", type=int, default=1, help="timed runs (each a fresh process)")
    p.add_argument("--child", choices=["rss", "tracemalloc"], help=argparse.SUPPRESS)
    p.add_argument("--token", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("error: set DATABASE_URL to a PostgreSQL database", file=sys.stderr)
        return 2
    if args.child:
        print(json.dumps(child(args.child, args.token)))
        return 0

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    token = setup_data(args.readings, args.crop_every)
    env = dict(os.environ, THROTTLE_USER="100000/min", THROTTLE_ANON="100000/min")
    results = []
    for mode in ["rss"] * args.repeat + ["tracemalloc"]:
        run = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--token", token],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(run.stdout.strip().splitlines()[-1]))
    print(
        f"{args.readings} readings ({(args.readings + args.crop_every - 1) // args.crop_every}"
        f" with a 48x48 PNG crop), code at {ROOT}"
    )
    for r in results:
        assert r["status"] == 200, r
        if r["mode"] == "rss":
            print(
                f"  time {r['seconds']:.2f} s, first byte {r['ttfb_s']:.2f} s, peak RSS "
                f"+{r['rss_growth_mb']:.1f} MB{'' if r['hwm_reset'] else ' (peak not reset)'}"
            )
        else:
            print(f"  tracemalloc peak {r['tracemalloc_peak_mb']:.1f} MB")
    print(f"  body {results[0]['bytes'] / 2**20:.1f} MB, sha256 {results[0]['sha256'][:16]}")
    if len({r["sha256"] for r in results}) != 1:
        print("error: the runs answered different bodies", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
