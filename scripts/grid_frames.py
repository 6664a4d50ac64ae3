"""Cut tests/data/grid/ from the GRID corpus clips stored in rizkiarm/LipNet.

The clips (MPEG-1, 360×288, 25 fps, 75 frames) are read from a checkout or snapshot of
<https://github.com/rizkiarm/LipNet> at commit bec592aa1e66378bc7ab33f6110f1c8a431b3b9a,
``evaluation/samples/GRID/*.mpg``; their sha256 sums are checked against the README's before
anything is written. Kept: every 3rd frame of the webcam clip (``bbaf2n``, a blink at frames
45–53) and frames 0, 15, 30, 45 and 60 of every clip (the calibration set: one speaker each),
as JPEG quality 92, named ``frame_NNN.jpg`` by their frame number.

    python scripts/grid_frames.py --source LipNet/evaluation/samples/GRID [--out tests/data/grid]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "grid"
WEBCAM_CLIP = "bbaf2n"
CALIBRATION = (0, 15, 30, 45, 60)


def expected_sums(readme: Path) -> dict[str, str]:
    """``clip.mpg`` → sha256, from the README's table rows."""
    rows = re.findall(r"^\| `(\w+\.mpg)` \|.*\| ([0-9a-f]{64}) \|$", readme.read_text(), re.M)
    return dict(rows)


def keep(clip: str) -> set[int]:
    return set(range(0, 75, 3)) | set(CALIBRATION) if clip == WEBCAM_CLIP else set(CALIBRATION)


def cut(path: Path, out: Path) -> int:
    """Write the kept frames of one clip; the number written."""
    out.mkdir(parents=True, exist_ok=True)
    cap, n, wrote, wanted = cv2.VideoCapture(str(path)), 0, 0, keep(path.stem)
    while True:
        ok, img = cap.read()
        if not ok:
            break
        if n in wanted:
            cv2.imwrite(str(out / f"frame_{n:03d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
            wrote += 1
        n += 1
    cap.release()
    return wrote


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, required=True, help="the folder of GRID *.mpg clips")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    sums = expected_sums(OUT / "README.md")
    if not sums:
        sys.exit("grid_frames: no clip sums found in tests/data/grid/README.md")
    for name, want in sorted(sums.items()):
        path = args.source / name
        if not path.is_file():
            sys.exit(f"grid_frames: {path} is missing")
        got = hashlib.sha256(path.read_bytes()).hexdigest()
        if got != want:
            sys.exit(f"grid_frames: {path} has sha256 {got}, the README says {want}")
        print(f"{name}: {cut(path, args.out / path.stem)} frames")


if __name__ == "__main__":
    main()
