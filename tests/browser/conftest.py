"""Real-browser tests: Debian's Chromium driven by Playwright, against the product served by
the product's server (the same ASGI app `make run` serves, embedded wiring) on the test database.

The learner's webcam is Chromium's fake capture device fed from a Y4M file the tests build
from real FER2013 faces; screenshots go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from ml.synth import scene
from tests.conftest import ROOT
from tests.servers import serve
from tests.services import require_service

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
BASE_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="session")
def asgi_server(django_db_setup, tmp_path_factory):
    """The server (config.serve) on the test database, embedded channel layer and tasks."""
    data = tmp_path_factory.mktemp("server-data")
    # Playwright's wait_for_function evals its predicate in the page, which the policy refuses;
    # tests/config/test_csp.py runs every page under the policy instead
    with serve(data, CONTENT_SECURITY_POLICY="off", INFERENCE_BATCH_WAIT_MS="100") as url:
        yield url


def write_y4m(path: Path, faces: list[np.ndarray], seconds_each: float = 3, fps: int = 10) -> Path:
    """An I420 Y4M clip (640×480) showing each face in turn: what the fake webcam plays."""
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W640 H480 F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for k, face in enumerate(faces):
            frame, _ = scene([face], side=220, seed=k)
            yuv = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)
            for _ in range(int(seconds_each * fps)):
                f.write(b"FRAME\n")
                f.write(yuv.tobytes())
    return path


@pytest.fixture(scope="session")
def fake_camera(fer_val, tmp_path_factory) -> Path:
    """Real faces with changing expressions (happy → surprise → neutral), each one the
    detector finds."""
    from ml.classes import EMOTIONS
    from ml.faces import detect_faces

    chosen = []
    for emotion in ("happy", "surprise", "neutral"):
        for i in np.flatnonzero(fer_val.labels == EMOTIONS.index(emotion)):
            frame, _ = scene([fer_val.images[i]], side=220, seed=len(chosen))
            small = cv2.resize(frame, (480, 360))
            if len(detect_faces(small)) == 1:
                chosen.append(fer_val.images[i])
                break
    return write_y4m(tmp_path_factory.mktemp("camera") / "faces.y4m", chosen)


@pytest.fixture(scope="module")
def playwright_instance():
    """Module-scoped: Playwright's sync API runs an event loop in this thread until it is
    closed, which would break every async test that runs after it."""
    require_service("Chromium", Path(CHROMIUM).exists(), CHROMIUM)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread; Django then refuses
    # ORM calls from test code (fixtures) unless told the loop is not ours to worry about.
    old = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            yield p
    finally:
        if old is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = old


def closing_pages(b):
    """Yields ``b``, then closes every page a test opened in it: a recorder left open goes on
    capturing and analysing (the face model runs on the CPU here) through every later test of
    the module, and on streaming into the server."""
    yield b
    for context in b.contexts:
        context.close()


@pytest.fixture
def browser(chromium_with_camera):
    yield from closing_pages(chromium_with_camera)


@pytest.fixture
def browser_without_camera_permission(chromium_without_camera_permission):
    yield from closing_pages(chromium_without_camera_permission)


@pytest.fixture(scope="module")
def chromium_with_camera(playwright_instance, fake_camera):
    b = playwright_instance.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=BASE_ARGS
        + [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={fake_camera}",
        ],
    )
    yield b
    b.close()


@pytest.fixture(scope="module")
def chromium_without_camera_permission(playwright_instance):
    b = playwright_instance.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=BASE_ARGS + ["--use-fake-device-for-media-stream"],
    )
    yield b
    b.close()


@pytest.fixture(scope="session", autouse=True)
def _screenshot_dir():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)


def login(page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def shot(page, name: str) -> Path:
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
