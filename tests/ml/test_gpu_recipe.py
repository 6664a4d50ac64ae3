"""scripts/gpu_recipe.sh, issue 7's one-command GPU run, played on the CPU at toy scale: the
same stages, flags and outputs, so that a session lent a GPU spends its minutes training."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import torch

from ml.checkpoint import file_sha256, load_checkpoint
from ml.data import load_image_folder
from ml.predictor import Predictor
from tests.ml.conftest import write_image_folder

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_recipe.sh"
MiB = 1 << 20


def _recipe(tmp_path, data, **env):
    full = {
        **os.environ,
        "D": str(data),
        "OUT": str(tmp_path / "out"),
        "RUNS": str(tmp_path / "runs"),
        "PY": sys.executable,
        "DEVICE": "cpu",
        "TEACHER": "tiny",
        "TEACHER_MINUTES": "0.3",  # the epoch caps bind first here
        "TEACHER_EPOCHS": "6",
        "STUDENT_MINUTES": "0.3",
        "STUDENT_EPOCHS": "4",
        "MIN_SAMPLES": "100",
        "EXTRA": "--batch-size 16 --lr 0.05 --threads 1",
        **env,
    }
    return subprocess.run(
        ["bash", str(SCRIPT)], env=full, capture_output=True, text=True, timeout=240
    )


def _float_dtypes(ck) -> set:
    return {v.dtype for v in ck["state_dict"].values() if v.is_floating_point()}


def test_the_gpu_recipe_brings_back_what_the_device_tool_can_carry(tmp_path):
    data = tmp_path / "fer"
    write_image_folder(data / "train", per_class=30, seed=1)
    write_image_folder(data / "validation", per_class=40, seed=2)
    # "huge" is no model size: one student failing must not cost the others their results
    done = _recipe(tmp_path, data, STUDENTS="fast huge")
    assert done.returncode == 1, done.stderr
    assert "student huge failed" in done.stderr

    out = tmp_path / "out"
    files = sorted(p.name for p in out.iterdir())
    assert files == ["fast.pt", "logs.tar.gz", "results.json", "teacher.pt"]
    # the device tool brings back at most 8 files of at most 16 MiB each
    assert all((out / f).stat().st_size < 16 * MiB for f in files)

    teacher = load_checkpoint(out / "teacher.pt")
    assert _float_dtypes(teacher) == {torch.float16}
    assert 0.05 < teacher["calibration"]["temperature"] < 20
    # the fitted run is recorded as the command that replays it
    command = teacher["recipe"]["command"]
    assert "--fit-minutes" not in command and "--max-minutes" not in command
    assert f"--epochs {teacher['recipe']['train_config']['epochs']}" in command
    assert "--mixup-alpha 0.2" in command and "--size tiny" in command

    student = load_checkpoint(out / "fast.pt")
    [lineage] = student["recipe"]["teacher_from"]
    assert lineage["sha256"] == file_sha256(out / "teacher.pt")  # the file that came back
    assert "--kd-mode online" in student["recipe"]["command"]
    assert "calibration" in student

    results = json.loads((out / "results.json").read_text())
    rows = results["evaluations"]
    assert [(Path(r["weights"]).name, r["tta"]) for r in rows] == [
        ("teacher.pt", False),
        ("teacher.pt", True),
        ("fast.pt", False),
        ("fast.pt", True),
    ]
    assert results["device"] == "cpu"
    # the pace and the peak of each run, read off its metrics.jsonl
    teacher_log = (tmp_path / "runs" / "teacher" / "metrics.jsonl").read_text().splitlines()
    assert set(results["training"]) == {"teacher", "fast"}
    t = results["training"]["teacher"]
    assert t["epochs"] == len(teacher_log) == teacher["recipe"]["train_config"]["epochs"]
    assert t["best_val_acc"] == teacher["metrics"]["val"]["accuracy"] and t["seconds"] > 0
    # what came back reads as it was measured there
    ds = load_image_folder(data / "validation")
    acc = (Predictor(out / "teacher.pt").predict_faces(ds.images).argmax(1) == ds.labels).mean()
    assert abs(acc - rows[0]["accuracy"]) < 1e-9

    with tarfile.open(out / "logs.tar.gz") as tar:
        names = {Path(n).name for n in tar.getnames()}
        assert {"teacher.log", "fast.log", "huge.log", "recipe.log", "metrics.csv"} <= names


def test_a_model_whose_calibration_is_refused_still_comes_back(tmp_path):
    data = tmp_path / "fer"
    write_image_folder(data / "train", per_class=20, seed=1)
    write_image_folder(data / "validation", per_class=20, seed=2)
    # 140 validation faces are too few for a temperature: each model comes back as it is
    done = _recipe(
        tmp_path, data, STUDENTS="tiny", MIN_SAMPLES="1000", TEACHER_EPOCHS="2", STUDENT_EPOCHS="1"
    )
    assert done.returncode == 0, done.stderr
    assert "calibration refused" in done.stderr and "tiny.pt is not calibrated" in done.stderr
    teacher = load_checkpoint(tmp_path / "out" / "teacher.pt")
    assert "calibration" not in teacher
    assert _float_dtypes(teacher) == {torch.float16}
    assert "calibration" not in load_checkpoint(tmp_path / "out" / "tiny.pt")
    assert len(json.loads((tmp_path / "out" / "results.json").read_text())["evaluations"]) == 4


def test_the_gpu_recipe_refuses_a_missing_dataset_at_once(tmp_path):
    done = _recipe(tmp_path, tmp_path / "nowhere")
    assert done.returncode == 2
    assert "must hold train/ and validation/" in done.stderr
    assert not (tmp_path / "runs").exists()
