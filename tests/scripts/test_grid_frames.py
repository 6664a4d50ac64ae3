"""The GRID test footage is what its README says it is (tests/data/grid)."""

import cv2

from scripts.device_harness import FRAMES, GRID, calibration_frames
from scripts.grid_frames import expected_sums, keep


def test_the_readme_names_a_sum_for_every_clip_folder():
    sums = expected_sums(GRID / "README.md")
    folders = {p.name for p in GRID.iterdir() if p.is_dir()}
    assert {name.removesuffix(".mpg") for name in sums} == folders
    assert len(folders) == 10


def test_every_folder_holds_exactly_the_frames_the_cut_keeps():
    for folder in (p for p in GRID.iterdir() if p.is_dir()):
        held = {int(p.stem.removeprefix("frame_")) for p in folder.glob("frame_*.jpg")}
        assert held == keep(folder.name), folder.name
    assert FRAMES.parent == GRID and len(list(FRAMES.glob("frame_*.jpg"))) == 25


def test_the_calibration_set_is_five_frames_of_each_speaker():
    named = calibration_frames()
    assert len(named) == 50
    assert len({name.split("/")[0] for name, _ in named}) == 10
    assert all(img.shape == (288, 360, 3) for _, img in named)
    assert cv2.imread(str(FRAMES / "frame_051.jpg")).shape == (288, 360, 3)
