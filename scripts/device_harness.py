"""Run static/js/device_face.js in headless Chromium on still pictures, without the product's
server: a throwaway HTTP server gives the static files, Playwright drives Debian's Chromium.
Shared by scripts/calibrate_device_box.py, scripts/bench_device.py and the browser tests."""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from scripts import grid_frames

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
GRID = grid_frames.OUT
# the learners' webcam: one GRID speaker, every 3rd frame (tests/data/grid/README.md)
FRAMES = GRID / grid_frames.WEBCAM_CLIP
# the calibration set: five frames of each of the ten GRID speakers
CALIBRATION = tuple(f"frame_{i:03d}.jpg" for i in grid_frames.CALIBRATION)
# the recorder draws the webcam this wide before it analyses or sends a picture
RECORDER_WIDTH = 480
# software WebGL in headless Chromium (no GPU here); the cpu backend needs neither flag
WEBGL_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]

ANALYSE_JS = """
async ({ modelBase, backend, pictures, keepCrops }) => {
  const mod = await import("/static/js/device_face.js");
  const t0 = performance.now();
  const dev = await mod.loadDeviceFace({ modelBase, backend });
  const loadMs = performance.now() - t0;
  const out = [];
  for (const src of pictures) {
    const img = new Image();
    img.src = src;
    await img.decode();
    const c = document.createElement("canvas");
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    c.getContext("2d").drawImage(img, 0, 0);
    const r = await dev.analyse(c);
    const mesh = r.face ? mod.meshBox(r.face.mesh) : null;
    // a geometric check of yaw's sign: the nose tip's offset from the cheeks' midpoint, in
    // mesh widths (+ = toward the picture's right, where a learner turning left moves it)
    const m = r.face && r.face.mesh;
    const nose = m ? (m[1][0] - (m[234][0] + m[454][0]) / 2) / mesh[2] : null;
    out.push({ cues: r.cues, ms: r.ms, mesh, nose,
               crop: keepCrops && r.crop ? Array.from(r.crop) : null });
  }
  return { backend: dev.backend, loadMs, irisAbove: mod.IRIS_ABOVE_CORNERS, results: out };
}
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def end_headers(self):
        if self.path.endswith(".js"):  # module scripts need a JavaScript type
            self.send_header("Cache-Control", "no-store")
        super().end_headers()


@contextlib.contextmanager
def static_server() -> Iterator[str]:
    """The repository root over HTTP (so /static/... resolves as in the product)."""
    handler = functools.partial(_Quiet, directory=str(ROOT))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def data_url(bgr: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", bgr)  # lossless: the browser sees exactly these pixels
    assert ok
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def frames(limit: int | None = None, folder: Path = FRAMES) -> list[tuple[str, np.ndarray]]:
    paths = sorted(folder.glob("frame_*.jpg"))[:limit]
    return [(p.name, cv2.imread(str(p))) for p in paths]


def calibration_frames() -> list[tuple[str, np.ndarray]]:
    """``CALIBRATION`` of every GRID clip, named ``clip/frame_NNN.jpg``."""
    paths = sorted(p for p in GRID.glob("*/frame_*.jpg") if p.name in CALIBRATION)
    return [(f"{p.parent.name}/{p.name}", cv2.imread(str(p))) for p in paths]


def at_width(bgr: np.ndarray, width: int = RECORDER_WIDTH) -> np.ndarray:
    """The picture drawn ``width`` wide, as the recorder's canvas draws the webcam."""
    h, w = bgr.shape[:2]
    if w == width:
        return bgr
    how = cv2.INTER_AREA if w > width else cv2.INTER_LINEAR
    return cv2.resize(bgr, (width, round(width * h / w)), interpolation=how)


def analyse(
    pictures: list[np.ndarray], backend: str = "webgl", keep_crops: bool = False, playwright=None
) -> dict:
    """Run the device module on BGR pictures in Chromium: {backend, loadMs, results: [...]}.
    ``playwright``: a running sync Playwright (tests have one: a second cannot start)."""
    if playwright is not None:
        return _analyse(playwright, pictures, backend, keep_crops)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        return _analyse(p, pictures, backend, keep_crops)


def _analyse(p, pictures, backend, keep_crops) -> dict:
    args = ["--no-sandbox", "--disable-dev-shm-usage"]
    args += WEBGL_ARGS if backend == "webgl" else ["--disable-gpu"]
    with static_server() as base:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.route(f"{base}/harness", _blank)
            page.goto(f"{base}/harness")
            out = page.evaluate(
                ANALYSE_JS,
                {
                    "modelBase": "/static/vendor/human/models/",
                    "backend": backend,
                    "pictures": [data_url(p) for p in pictures],
                    "keepCrops": keep_crops,
                },
            )
            out["console_errors"] = errors
            return out
        finally:
            browser.close()


def _blank(route) -> None:
    route.fulfill(body="<!doctype html><title>harness</title>", content_type="text/html")
