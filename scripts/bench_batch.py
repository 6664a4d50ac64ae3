#!/usr/bin/env python
"""What one inference batch of device crops costs the worker, in-process, with real services.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/affect_bench REDIS_URL=redis://127.0.0.1:6379/9 \
        .venv/bin/python scripts/bench_batch.py --sessions 32 --rounds 40 [--profile 25]

Opens ``--sessions`` learner sessions of one course, each with ``--history`` seconds of
analysed readings behind it (a class in full swing: the live summary of a touched session
reads its look-back), and one listening channel in each session's group and in the course's
(the learners' and the instructor's sockets). Then, ``--rounds`` times, accepts one crop frame
per session (untimed) and runs ``readings_analyse`` on them as one batch, as a worker does.
Prints the median of each phase per batch and per frame, and, with ``--profile N``, the N
functions with the most time of their own over all rounds (cProfile; ``BENCH_SORT=cumulative``
sorts by time with callees). ``--away``: every learner looks away, the worst case for the live
summaries (each disengaged session's summary reads its whole look-back).

The figure to read: ``total ms/frame``. One worker holds 1,000 / that many frames a second
at best; the task's own overhead (broker round trips) comes on top.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret")

from bench_pipeline import (  # noqa: E402
    device_payloads,
    django_on_services,
    make_frames,
    setup_data,
)

PHASES = ("fetch_s", "decode_s", "detect_s", "classify_s", "db_s", "broadcast_s", "total_s")


def open_sessions(course, learners):
    from tutoring.services import session_start

    # a session an earlier run left open is ended ("superseded") by the new one
    return [session_start(learner=u, course=course) for u, _ in learners]


def fill_history(sessions, seconds: int, crop_cues) -> None:
    """``seconds`` analysed device readings a second back from now for each session."""
    from django.utils import timezone

    from emotion.models import Reading
    from tests.factories import probs_for

    now = timezone.now()
    rows = []
    for s in sessions:
        for i in range(seconds):
            t = now - timedelta(seconds=seconds - i)
            rows.append(
                Reading(
                    session=s,
                    sequence=1_000_000 + i,
                    captured_at=t,
                    received_at=t,
                    analysed_at=t,
                    face_found=True,
                    face_source=Reading.FaceSource.DEVICE,
                    cues=crop_cues,
                    attentive=True,
                    probs=probs_for("neutral", 0.8),
                    label="neutral",
                    confidence=0.8,
                )
            )
    Reading.objects.bulk_create(rows, batch_size=2000)


def listen(course) -> None:
    """A member in the stream sockets' group (one web process) and in the course's (the
    instructor's view), as a running server has: a message to a group without members costs
    the sender less than the real thing."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from config.broadcast import course_group
    from emotion.fanout import SUMMARIES_GROUP

    layer = get_channel_layer()

    async def join():
        for g in (SUMMARIES_GROUP, course_group(course.pk)):
            await layer.group_add(g, await layer.new_channel())

    async_to_sync(join)()


def a_second_later(sessions) -> None:
    """Every reading of the sessions a second older: each round is the next second of a class
    sending a frame a second, however fast the rounds run (the current window then holds
    about as many readings as it would)."""
    from django.db.models import F

    from emotion.models import Reading

    Reading.objects.filter(session__in=sessions).update(
        received_at=F("received_at") - timedelta(seconds=1),
        captured_at=F("captured_at") - timedelta(seconds=1),
        analysed_at=F("analysed_at") - timedelta(seconds=1),
    )


def one_round(sessions, frame: bytes, cues: dict | None, seq: int) -> list[int]:
    """One frame a session: a crop with its cues, or (``cues`` None) a picture."""
    from emotion.services import IncomingFrame, frames_accept

    ids = []
    for s in sessions:
        if cues is None:
            f = IncomingFrame(data=frame, sequence=seq)
        else:
            f = IncomingFrame(data=frame, sequence=seq, kind="crop", cues=dict(cues))
        ids += frames_accept(session=s, frames=[f], enqueue=False).reading_ids
    return ids


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sessions", type=int, default=32, help="sessions (frames) per batch")
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--history", type=int, default=60, help="seconds of readings per session")
    p.add_argument("--profile", type=int, default=0, help="print the top N functions")
    p.add_argument(
        "--kind",
        choices=("crop", "picture"),
        default="crop",
        help="crop: the device's 48×48 crop and cues; picture: a 640×480 JPEG, the server "
        "finds the face (the same batch, for the ratio of the two)",
    )
    p.add_argument(
        "--away",
        action="store_true",
        help="every learner looks away (head turned 70°): every session is disengaged, the "
        "worst case, where each summary reads its whole look-back",
    )
    args = p.parse_args()
    if not django_on_services():
        return 2
    from emotion.inference import get_predictor
    from emotion.services import readings_analyse

    jpegs = make_frames(4)
    crop, cues = device_payloads(jpegs)[0]
    if args.away:
        cues = {**cues, "yaw": 70.0}
    frame, sent_cues = (crop, cues) if args.kind == "crop" else (jpegs[0], None)
    course, _, learners = setup_data(args.sessions)
    sessions = open_sessions(course, learners)
    fill_history(sessions, args.history, cues)
    listen(course)
    get_predictor()
    readings_analyse(
        reading_ids=one_round(sessions, frame, sent_cues, 0)
    )  # warm: model, connections
    stats, prof = [], cProfile.Profile()
    for k in range(args.rounds):
        a_second_later(sessions)
        ids = one_round(sessions, frame, sent_cues, k + 1)
        if args.profile:
            prof.enable()
        stats.append(readings_analyse(reading_ids=ids))
        if args.profile:
            prof.disable()
    n = args.sessions
    print(
        f"{n} {args.kind}s a batch, {args.rounds} batches, {args.history} s of history a session"
        + (", every learner looking away" if args.away else "")
    )
    print(f"{'phase':<12}{'ms/batch':>10}{'ms/frame':>10}")
    for ph in PHASES:
        med = statistics.median(s[ph] for s in stats) * 1000
        print(f"{ph[:-2]:<12}{med:>10.1f}{med / n:>10.2f}")
    if args.profile:
        pstats.Stats(prof).sort_stats(os.environ.get("BENCH_SORT", "tottime")).print_stats(
            args.profile
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
