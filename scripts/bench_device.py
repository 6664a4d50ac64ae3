"""What the on-device face path costs here, and what each mode puts on the wire.

In headless Chromium (software rendering: this machine has no GPU) the device module analyses
a real speaker's frames (tests/data/grid/bbaf2n, a GRID clip, drawn at the recorder's 480 px width);
printed: the model's load time and the per-picture cost (median, p95, the first picture apart:
it warms the model up) for each backend asked for. Then the bytes of one stream message per
picture in each mode, built as static/js/recorder.js builds them: cues only, crop + cues, and
a full picture (JPEG quality 0.8 at 480 px, today's fallback; encoded by OpenCV at quality 80,
close to the browser's). Figures only, no asserts: docs/device.md keeps them.

    PYTHONPATH=. python scripts/bench_device.py [--backend webgl cpu] [--frames 12]
"""

from __future__ import annotations

import argparse
import json
import struct

import cv2
import numpy as np

from scripts.device_harness import analyse, at_width, frames


def message_bytes(header: dict, body: bytes) -> int:
    h = json.dumps(header, separators=(",", ":")).encode()
    return len(struct.pack(">I", len(h)) + h + body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", nargs="+", default=["webgl", "cpu"])
    ap.add_argument("--frames", type=int, default=12)
    args = ap.parse_args()
    pictures = [at_width(f) for _, f in frames(args.frames)]
    cues_sample = None
    for backend in args.backend:
        out = analyse(pictures, backend=backend)
        ms = np.array([r["ms"] for r in out["results"]][1:])
        found = sum(bool(r["cues"]["face"]) for r in out["results"])
        print(
            f"{backend:>5} (ran as {out['backend']}): load {out['loadMs']:.0f} ms, first picture "
            f"{out['results'][0]['ms']:.0f} ms, then median {np.median(ms):.0f} ms, "
            f"p95 {np.percentile(ms, 95):.0f} ms over {len(ms)}; face in {found}/{len(pictures)}"
        )
        cues_sample = cues_sample or [r["cues"] for r in out["results"] if r["cues"]["face"]]
    stamp = {"sequence": 12345, "captured_at": "2026-12-06T12:00:00.123000+00:00"}
    cues = [message_bytes({**stamp, "kind": "cues", "cues": c}, b"") for c in cues_sample]
    crop = [message_bytes({**stamp, "kind": "crop", "cues": c}, bytes(2304)) for c in cues_sample]
    jpeg = [
        message_bytes(stamp, cv2.imencode(".jpg", p, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
        for p in pictures
    ]
    print("bytes on the wire per picture (one stream message, median):")
    print(f"  cues only       {np.median(cues):7.0f}")
    print(f"  crop + cues     {np.median(crop):7.0f}")
    print(f"  full picture    {np.median(jpeg):7.0f}  (JPEG, 480 px wide)")


if __name__ == "__main__":
    main()
