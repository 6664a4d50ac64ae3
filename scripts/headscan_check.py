"""Head pose against ground truth: the device's yaw, pitch and roll on a rendered head scan
turned by known angles.

The pictures are tests/data/head_scan (the Lee Perry-Smith head scan, CC BY 3.0, rendered by
scripts/render_head_scan.py; its README says where from, how and the limits), with the true
angles in its truth.json, signed as the cues are (yaw + = the learner's left, pitch + = up,
roll + = the head tilted toward the learner's left shoulder). The device module runs in
headless Chromium (scripts/device_harness.py). Printed: every picture's true and measured
angles, whether a face was found and the nose tip's offset (device_harness: + = toward the
picture's right); then per axis, over the frames where only that axis turns (the sweep) and over
all frames with a face, the mean absolute error, the least-squares line measured = slope × true
+ intercept, and the sign agreement on the frames turned 15° or more on that axis. Exits 1 when
a face is missed on a frame within |yaw| <= 30 and |pitch| <= 20, or a measured sign disagrees
with a true angle of 15° or more.

    PYTHONPATH=. python scripts/headscan_check.py [--backend webgl|cpu] [--data DIR]
        [--plot docs/headscan_check.png]

``--plot`` draws measured against true angle for each axis's sweep, with the identity line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from scripts.device_harness import ROOT, analyse

DATA = ROOT / "tests" / "data" / "head_scan"
AXES = ("yaw", "pitch", "roll")
SIGNED = 15.0  # a true angle this large must be measured with its sign
# a face must be found within these (degrees)
FIND = {"yaw": 30.0, "pitch": 20.0}


def load(folder: Path) -> tuple[list[str], list[dict], list[np.ndarray]]:
    truth = json.loads((folder / "truth.json").read_text())
    names = list(truth)
    pictures = [cv2.imread(str(folder / n)) for n in names]
    missing = [n for n, p in zip(names, pictures, strict=True) if p is None]
    if missing:
        sys.exit(f"headscan_check: cannot read {', '.join(missing)} in {folder}")
    return names, [truth[n] for n in names], pictures


def fit(true: np.ndarray, measured: np.ndarray) -> str:
    """MAE, the least-squares line and the correlation, as text."""
    if len(true) == 0:
        return "no frames"
    mae = float(np.mean(np.abs(measured - true)))
    text = f"n {len(true):2}, MAE {mae:5.1f}"
    if len(true) >= 3 and np.ptp(true) > 0:
        slope, icpt = np.polyfit(true, measured, 1)
        r = float(np.corrcoef(true, measured)[0, 1])
        text += f", measured = {slope:5.2f} x true {icpt:+5.1f} (r {r:.3f})"
    return text


def plot(found: list[tuple[dict, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), sharex=True, sharey=True)
    for ax, a in zip(axes, AXES, strict=True):
        others = [b for b in AXES if b != a]
        pts = np.array(
            [(t[a], c[a]) for t, c in found if all(t[b] == 0 for b in others)], dtype=float
        ).reshape(-1, 2)
        ax.plot([-50, 50], [-50, 50], color="0.6", lw=1, ls="--", label="measured = true")
        ax.plot(pts[:, 0], pts[:, 1], "o", ms=4, label="device")
        ax.set_title(f"{a} ({', '.join(o + ' 0' for o in others)})")
        ax.set_xlabel("true angle (°)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("measured (°)")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle("Device head pose on the rendered head scan (tests/data/head_scan)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="webgl", choices=["webgl", "cpu"])
    ap.add_argument("--data", type=Path, default=DATA, help="a folder with truth.json")
    ap.add_argument("--plot", type=Path, default=None, help="write the figure (a PNG) here")
    args = ap.parse_args()
    names, truth, pictures = load(args.data)
    out = analyse(pictures, backend=args.backend)
    results = out["results"]
    print(f"backend {out['backend']}, {len(names)} pictures from {args.data}")
    print(f"{'picture':29} {'true yaw/pitch/roll':>20}   {'measured':>20}   {'error':>20}  nose")
    ok, problems = True, []
    found = []
    for n, t, r in zip(names, truth, results, strict=True):
        c = r["cues"]
        tv = "".join(f"{t[a]:7.1f}" for a in AXES)
        if not c.get("face"):
            print(f"{n:29} {tv}   no face")
            if abs(t["yaw"]) <= FIND["yaw"] and abs(t["pitch"]) <= FIND["pitch"]:
                ok = False
                problems.append(f"{n}: no face")
            continue
        found.append((t, c))
        mv = "".join(f"{c[a]:7.1f}" for a in AXES)
        ev = "".join(f"{c[a] - t[a]:+7.1f}" for a in AXES)
        flags = [a for a in AXES if abs(t[a]) >= SIGNED and np.sign(c[a]) != np.sign(t[a])]
        for a in flags:
            ok = False
            problems.append(f"{n}: {a} true {t[a]:+.0f}, measured {c[a]:+.1f} (sign)")
        mark = "  SIGN " + ",".join(flags) if flags else ""
        print(f"{n:29} {tv}   {mv}   {ev}  {r['nose']:+5.2f}{mark}")
    print(f"\nfaces found {len(found)}/{len(names)}")
    for a in AXES:
        others = [b for b in AXES if b != a]
        sweep = [(t[a], c[a]) for t, c in found if all(t[b] == 0 for b in others)]
        every = [(t[a], c[a]) for t, c in found]
        signed = [(t[a], c[a]) for t, c in found if abs(t[a]) >= SIGNED]
        agree = sum(np.sign(m) == np.sign(v) for v, m in signed)
        s, e = (np.array(x, dtype=float).reshape(-1, 2) for x in (sweep, every))
        print(f"{a:5} sweep ({', '.join(o + ' 0' for o in others)}): {fit(s[:, 0], s[:, 1])}")
        print(f"{'':5} all frames: {fit(e[:, 0], e[:, 1])}")
        print(f"{'':5} sign agrees on {agree}/{len(signed)} frames with |true {a}| >= {SIGNED:g}")
    if args.plot:
        plot(found, args.plot)
    if out.get("console_errors"):
        print("console errors:", *out["console_errors"], sep="\n  ")
    if not ok:
        sys.exit("headscan_check: " + "; ".join(problems))


if __name__ == "__main__":
    main()
