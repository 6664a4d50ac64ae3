"""Head pose on real footage with visible turns: the device's yaw and pitch against each
annotated segment, and ml/engagement.py's attention over each segment.

The footage is tests/data/head_pose (CC BY 4.0, Intel's sample videos; its README says where
from and how it is annotated): `turns` (a woman turns far to her right, back to the camera, to
her left, back), `bow` (a woman bows her head), `frontal` (a man facing the camera). The device
module runs in headless Chromium (scripts/device_harness.py). Printed: every frame's cues with
its segment, then per segment the median yaw and pitch against the annotation, and attention
with the product's formula (head pose plus gaze) and with head pose alone. Draws the figure in
docs/device.md. Exits 1 when a segment disagrees with its annotation.

    PYTHONPATH=. python scripts/headpose_check.py [--backend webgl|cpu] [--cone 25]
        [--plot docs/headpose_check.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ml.engagement import ATTENTION_CONE_DEGREES, Observation, WindowSummary, summarize_window
from scripts.device_harness import ROOT, analyse, frames

DATA = ROOT / "tests" / "data" / "head_pose"
CLIPS = ("turns", "bow", "frontal")
# a turned segment's median must pass this (degrees, the expected sign); a frontal or level
# frame must stay within LEVEL
MOVED = {"yaw": 20.0, "pitch": 10.0}
LEVEL = 10.0


def clip(name: str) -> tuple[list[int], list[np.ndarray], dict]:
    """A clip's frame numbers (in the source), its pictures and its annotation."""
    spec = json.loads((DATA / "segments.json").read_text())[name]
    named = frames(folder=DATA / name)
    index = [int(n.removeprefix("frame_").removesuffix(".jpg")) for n, _ in named]
    return index, [f for _, f in named], spec


def segment_of(spec: dict, i: int) -> dict | None:
    return next((s for s in spec["segments"] if s["first"] <= i <= s["last"]), None)


def observations(index: list[int], results: list[dict], fps: float, gaze: bool = True):
    """The device results as engagement observations at the frames' times; ``gaze=False``
    drops the eye gaze so that head pose alone decides facing."""
    out = []
    for i, r in zip(index, results, strict=True):
        cues = {k: v for k, v in r["cues"].items() if gaze or not k.startswith("gaze_")}
        face = bool(cues.get("face"))
        out.append(
            Observation.from_dict({"t": i / fps, "face": face, "cues": cues, "source": "device"})
        )
    return out


def segment_window(obs, segment: dict, fps: float, cone: float) -> WindowSummary:
    start, end = segment["first"] / fps, (segment["last"] + 1) / fps
    return summarize_window(obs, start, end, attention_cone_degrees=cone)


def agrees(expect: str | None, values: list[float], moved: float) -> bool | None:
    """'+'/'-': every frame has that sign and the median is past ``moved``; '0': every frame
    within LEVEL. None when nothing is expected or no frame had a face."""
    if expect is None or not values:
        return None
    v = np.array(values)
    if expect == "0":
        return bool(np.all(np.abs(v) < LEVEL))
    sign = 1.0 if expect == "+" else -1.0
    return bool(np.all(sign * v > 0) and sign * np.median(v) > moved)


def measure(backend: str, cone: float) -> tuple[dict, bool]:
    """Run every clip once; print the per-frame and per-segment tables."""
    clips = {name: clip(name) for name in CLIPS}
    pictures = [p for _, pics, _ in clips.values() for p in pics]
    results = analyse(pictures, backend=backend)["results"]
    print("clip     frame segment     yaw   pitch   roll  gaze_y gaze_p  nose")
    out, ok, at = {}, True, 0
    for name, (index, _, spec) in clips.items():
        mine = results[at : at + len(index)]
        at += len(index)
        out[name] = (index, mine, spec)
        for i, r in zip(index, mine, strict=True):
            print_frame(name, i, segment_of(spec, i), r)
    print(f"\nper segment (attention cone {cone:g} degrees)")
    for name, (index, mine, spec) in out.items():
        ok &= print_segments(name, index, mine, spec, cone)
    return out, ok


def print_frame(name: str, i: int, segment: dict | None, r: dict) -> None:
    c, seg = r["cues"], segment["name"] if segment else "-"
    if not c.get("face"):
        print(f"{name:8} {i:5} {seg:11} no face")
        return
    g = [c.get("gaze_yaw"), c.get("gaze_pitch")]
    gy, gp = (f"{v:6.1f}" if v is not None else "     -" for v in g)
    print(
        f"{name:8} {i:5} {seg:11} {c['yaw']:6.1f} {c['pitch']:6.1f} {c['roll']:6.1f} "
        f"{gy} {gp} {r['nose']:5.2f}"
    )


def print_segments(name, index, results, spec, cone) -> bool:
    fps, ok = spec["fps"], True
    both, head = (observations(index, results, fps, gaze) for gaze in (True, False))
    for s in spec["segments"]:
        cues = [
            r["cues"] for i, r in zip(index, results, strict=True) if s["first"] <= i <= s["last"]
        ]
        faces = [c for c in cues if c.get("face")]
        verdict = []
        for axis in ("yaw", "pitch"):
            values = [c[axis] for c in faces]
            good = agrees(s[axis], values, MOVED[axis])
            ok &= good is not False
            med = f"{np.median(values):6.1f}" if values else "     -"
            verdict.append(f"{axis} {med} (expected {s[axis] or 'any'}: {_word(good)})")
        w, h = segment_window(both, s, fps, cone), segment_window(head, s, fps, cone)
        print(
            f"{name:8} {s['name']:11} frames {s['first']}-{s['last']}, faces {len(faces)}/{len(cues)}: "
            + "; ".join(verdict)
            + f"; attention {w.attention_ratio:.2f} (head pose alone {h.attention_ratio:.2f}),"
            f" engagement {w.engagement:.2f}"
        )
    return ok


def _word(good: bool | None) -> str:
    return {None: "not checked", True: "agrees", False: "DISAGREES"}[good]


def plot(out: dict, cone: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1, 2]})
    panels = (("turns", ("yaw", "pitch"), axes[0]), ("bow", ("pitch", "roll"), axes[1]))
    for name, keys, ax in panels:
        index, results, spec = out[name]
        fps = spec["fps"]
        for s in spec["segments"]:
            ax.axvspan(s["first"] / fps, (s["last"] + 1) / fps, color="0.9")
            ax.text((s["first"] + s["last"] + 1) / 2 / fps, 62, s["name"], ha="center", fontsize=7)
        t = [i / fps for i in index]
        nan = float("nan")  # no face: a gap in the line, an x at the bottom
        for key in keys:
            ax.plot(t, [r["cues"].get(key, nan) for r in results], marker="o", ms=3, label=key)
        lost = [ti for ti, r in zip(t, results, strict=True) if not r["cues"].get("face")]
        ax.plot(lost, [-65] * len(lost), "kx", ms=5, ls="", label="no face found")
        if name == "turns":
            y = [r["cues"]["yaw"] + (r["cues"].get("gaze_yaw") or 0) for r in results]
            ax.plot(t, y, ls=":", label="yaw + gaze_yaw")
        for c in (cone, -cone):  # the course's attention cone
            ax.axhline(c, color="k", lw=0.6, ls="--")
        ax.set(
            ylim=(-70, 70),
            xlabel="seconds",
            ylabel="degrees",
            title=f"{name} (tests/data/head_pose)",
        )
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="webgl", choices=["webgl", "cpu"])
    ap.add_argument("--cone", type=float, default=ATTENTION_CONE_DEGREES)
    ap.add_argument("--plot", type=Path, default=None, help="write the figure (a PNG) here")
    args = ap.parse_args()
    if not args.cone > 0:
        sys.exit("headpose_check: --cone must be > 0")
    out, ok = measure(args.backend, args.cone)
    if args.plot:
        plot(out, args.cone, args.plot)
    if not ok:
        sys.exit("headpose_check: a segment disagrees with its annotation (see above)")


if __name__ == "__main__":
    main()
