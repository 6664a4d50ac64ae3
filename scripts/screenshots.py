"""Full-page screenshots of every page, on a laptop (1366×768) and a phone (390×844), for the
docs: ``docs/screenshots/<page>-<laptop|phone>.png``.

    python scripts/screenshots.py                      # its own server, demo data
    python scripts/screenshots.py --base-url URL       # a running server with the demo seed

Without ``--base-url`` it serves the product itself (``python -m config.serve``) on a temporary
SQLite ``DATA_DIR`` (no PostgreSQL, no Redis), seeded with the demo accounts (``seed_demo``)
and two past sessions of the first demo learner (one with a pause and a stretch without a
face), and stops it at the end. Either way it signs in as the demo learner, instructor and
admin (the demo password) and drives Debian's Chromium (``CHROMIUM``, default
``/usr/bin/chromium``) with Playwright, as ``tests/browser`` does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config.serve import server_argv  # noqa: E402

#: tutoring.services.DEMO_PASSWORD (importing it would need Django's settings here)
DEMO_PASSWORD = "demo-pass-123"

PASSWORD = [DEMO_PASSWORD]  # --password replaces it
VIEWPORTS = {"laptop": (1366, 768), "phone": (390, 844)}
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"]
CAMERA = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]

# Two past sessions of learner1 in "Algebra I" (emotion on) and one open one, run in the
# server's environment through `manage.py shell`: readings as inference would have left them
# from the device path (crop + cues: head pose, eyes, gaze), with a stretch looking down at
# notes, a stretch turned away and a few blinks and drowsy seconds.
SEED_HISTORY = """
import math
from datetime import timedelta
from django.utils import timezone
from emotion.models import Reading
from ml.classes import EMOTIONS
from ml.engagement import Observation, attentive
from tutoring.models import Course, LearnerSession, User
course = Course.objects.get(title="Algebra I")
learner = User.objects.get(username="learner1")
consent = learner.consents.get(course=course, revoked_at__isnull=True)
now = timezone.now()
def cues(k, away):
    yaw = 3 * math.sin(k / 9) + (38 if away == "turned" else 0)
    pitch = -4 + 2 * math.cos(k / 7) - (34 if away == "down" else 0)
    eye = 0.07 if k % 23 == 0 or 200 <= k % 300 < 208 else 0.31 + 0.03 * math.sin(k / 5)
    return {"face": True, "box": [0.38, 0.22, 0.26, 0.33], "yaw": round(yaw, 2),
            "pitch": round(pitch, 2), "roll": 1.5, "eye_open_left": round(eye, 3),
            "eye_open_right": round(eye + 0.01, 3), "gaze_yaw": -1.0, "gaze_pitch": 0.5,
            "center_offset": 0.06, "area_fraction": 0.086}
def session(start, minutes, pause, no_face, away=lambda k: "", status="ended"):
    s = LearnerSession.objects.create(
        learner=learner, course=course, consent=consent, started_at=start,
        status=status, emotion_enabled=True, last_frame_at=start + timedelta(minutes=minutes),
        ended_at=start + timedelta(minutes=minutes) if status == "ended" else None,
        end_reason="ended" if status == "ended" else "")
    rows = []
    for k in range(int(minutes * 60)):
        if pause[0] <= k < pause[1]:
            continue
        face = not (no_face[0] <= k < no_face[1])
        c = cues(k, away(k)) if face else {"face": False}
        obs = Observation.from_dict({"t": k, "face": face, "cues": c, "source": "device"})
        mood = EMOTIONS[(k // 40) % len(EMOTIONS)]
        probs = {e: (0.55 if e == mood else 0.45 / (len(EMOTIONS) - 1)) for e in EMOTIONS}
        t = start + timedelta(seconds=k)
        rows.append(Reading(
            session=s, sequence=k, captured_at=t, received_at=t, analysed_at=t,
            face_found=face, face_source="device", attentive=attentive(obs),
            cues=c if face else {}, probs=probs if face else None,
            label=mood if face else None, confidence=0.55 if face else None))
    Reading.objects.bulk_create(rows)
session(now - timedelta(days=2), 6, (120, 170), (240, 280),
        away=lambda k: "down" if 60 <= k < 95 else "turned" if 300 <= k < 330 else "")
# a few kept crops for the review page: drawn faces (no real person's face in the docs)
import cv2, numpy as np
def drawn_face(k):
    img = np.full((48, 48), 90, np.uint8)
    cv2.ellipse(img, (24, 25), (17, 21), 0, 0, 360, 200, -1)
    for x in (17, 31):
        cv2.circle(img, (x, 20), 3, 40, -1)
    cv2.ellipse(img, (24, 34), (8, 2 + 3 * (k % 3)), 0, 0, 180 if k % 2 else 360, 50, 2)
    return cv2.imencode(".png", img)[1].tobytes()
Course.objects.filter(pk=course.pk).update(keep_face_crops=True)
kept = Reading.objects.filter(session__course=course, face_found=True).order_by("pk")[:400:8]
for k, r in enumerate(kept):
    reason = ("uncertain", "sample", "")[k % 3]
    Reading.objects.filter(pk=r.pk).update(
        face_crop=drawn_face(k), review_reason=reason, uncertain=reason == "uncertain")
# two reviewers went through most of them, the second blind, so the review page's agreement
# panel has figures; the admin is left the rest and some second reviews
from emotion.services import reading_review
rev1, rev2 = (User.objects.create_user(username=f"reviewer{n}", password="x",
              role=User.Role.ADMIN) for n in (1, 2))
for k, r in enumerate(Reading.objects.filter(pk__in=[r.pk for r in kept]).order_by("pk")[:28]):
    other = EMOTIONS[(EMOTIONS.index(r.label) + 1) % len(EMOTIONS)]
    first = other if k % 5 == 4 else r.label
    reading_review(reading=r, label=first, reviewer=rev1)
    if k < 22:
        reading_review(reading=r, label=other if k % 6 == 5 else first, reviewer=rev2)
session(now - timedelta(days=1), 4, (0, 0), (60, 90), away=lambda k: "down" * (150 <= k < 170))
# the open one runs a minute past now, so the live view still sees its learner when the
# browser gets there, glancing down at notes 3 s in every 10 from a minute ago
session(now - timedelta(minutes=2), 3, (0, 0), (0, 0),
        away=lambda k: "down" if k >= 60 and k % 10 < 3 else "", status="active")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def own_server():
    """The product on a temporary SQLite DATA_DIR with the demo seed; yields its base URL."""
    data = Path(tempfile.mkdtemp(prefix="screenshots-"))
    skip = ("DATABASE_URL", "REDIS_URL")  # the embedded defaults: SQLite, in-memory layer
    env = {k: v for k, v in os.environ.items() if k not in skip}
    env.update(DATA_DIR=str(data), SECRET_KEY="screenshots", ALLOWED_HOSTS="127.0.0.1,localhost")
    env.update(DJANGO_SETTINGS_MODULE="config.settings", PYTHONUNBUFFERED="1")
    manage = [sys.executable, "manage.py"]
    for cmd in (["migrate", "--noinput"], ["seed_demo"], ["shell", "-c", SEED_HISTORY]):
        subprocess.run(manage + cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    log = (data / "server.log").open("w")
    proc = subprocess.Popen(
        server_argv("127.0.0.1", port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/accounts/login/", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((data / "server.log").read_text()[-3000:]) from None
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        shutil.rmtree(data, ignore_errors=True)


def login(page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD[0])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def first_href(page, selector: str) -> str:
    return page.locator(selector).first.get_attribute("href")


def take(browser, base: str, out: Path, viewport: str) -> list[Path]:
    width, height = VIEWPORTS[viewport]
    saved = []

    def new_page():
        return browser.new_context(viewport={"width": width, "height": height}).new_page()

    def shot(page, name, path=None, wait=None):
        if path:
            page.goto(base + path)
        page.wait_for_load_state("networkidle")
        if wait:  # a selector: the policy (CSP) refuses wait_for_function's eval
            page.wait_for_selector(wait, timeout=15_000)
        target = out / f"{name}-{viewport}.png"
        page.screenshot(path=str(target), full_page=True)
        saved.append(target)

    page = new_page()
    shot(page, "login", "/accounts/login/")

    login(page, base, "learner1")
    shot(page, "learner-home", "/learn/")
    page.get_by_role("link", name="Algebra I").click()
    shot(page, "learner-course")
    session = first_href(page, 'a[href^="/learn/sessions/"]')
    if session:
        shot(page, "learner-session", session)
    shot(page, "learner-erase", "/learn/data/erase/")

    page = new_page()
    login(page, base, "instructor1")
    shot(page, "instructor-home", "/teach/")
    live = first_href(page, 'a[href$="/live/"]')
    course = live.rsplit("/live/", 1)[0]
    shot(page, "instructor-live", live)
    shot(page, "instructor-reports", f"{course}/reports/")
    shot(page, "instructor-sessions", f"{course}/sessions/")
    timeline = page.locator("#sessions-table tbody tr").nth(2)  # the one with a pause
    timeline = timeline.get_by_role("link", name="Timeline")
    page.goto(base + timeline.get_attribute("href"))
    shot(page, "instructor-timeline", wait='#timeline-gaps li:not(:has-text("Loading"))')

    page = new_page()
    login(page, base, "admin")
    shot(page, "review", "/review/")
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", help="a running server with the demo seed")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--password", default=DEMO_PASSWORD, help="the demo accounts' password")
    args = parser.parse_args()
    PASSWORD[0] = args.password
    args.out.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import sync_playwright

    @contextmanager
    def given(url):
        yield url

    server = given(args.base_url) if args.base_url else own_server()
    with server as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS + CAMERA)
        try:
            for viewport in VIEWPORTS:
                for path in take(browser, base.rstrip("/"), args.out, viewport):
                    print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
