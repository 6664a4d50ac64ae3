"""The ``python -m ml`` commands as a user runs them (subprocesses, exit codes, JSON)."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from ml.classes import EMOTIONS
from ml.synth import background, scene
from tests.conftest import ROOT
from tests.ml.conftest import write_image_folder


def ml(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "ml", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("weights", "bar"),
    [(None, 0.68), ("fer-fast.pt", 0.655)],
    ids=["default", "fast"],
)
def test_shipped_weights_reach_the_bar_on_fer2013_validation(fer_root, tmp_path, weights, bar):
    from ml.predictor import WEIGHTS_DIR

    extra = ["--weights", WEIGHTS_DIR / weights] if weights else []
    r = ml(
        "evaluate", fer_root / "validation", *extra, "--json", "-", "--plot", tmp_path / "cm.png"
    )
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    print(
        f"{weights or 'default'} weights on FER2013 validation: accuracy {s['accuracy']:.4f}, "
        f"macro-F1 {s['macro_f1']:.4f}, ECE {s['ece']:.4f}"
    )
    assert s["n"] == 3589
    assert s["accuracy"] >= bar
    assert s["temperature"] != 1.0  # shipped calibrated
    assert set(s["per_class"]) == set(EMOTIONS)
    assert np.array(s["confusion_matrix"]).sum() == 3589
    assert 0 <= s["ece"] < 0.2
    assert cv2.imread(str(tmp_path / "cm.png")) is not None


def test_evaluate_subset_of_classes_and_files(tmp_path):
    root = write_image_folder(tmp_path / "d", per_class=4, classes=("happy", "surprise", "fear"))
    out = tmp_path / "m.json"
    r = ml("evaluate", root, "--json", out)
    assert r.returncode == 0, r.stderr
    s = json.loads(out.read_text())
    assert s["n"] == 12 and s["classes_present"] == ["fear", "happy", "surprise"]
    assert set(s["per_class"]) == {"fear", "happy", "surprise"}
    assert "accuracy=" in r.stdout


def test_evaluate_an_ensemble(fer_root, tmp_path):
    from ml.predictor import DEFAULT_WEIGHTS

    data = tmp_path / "val"
    for cls in ("happy", "fear"):  # a small real subset keeps this quick
        (data / cls).mkdir(parents=True)
        for f in sorted((fer_root / "validation" / cls).iterdir())[:20]:
            (data / cls / f.name).symlink_to(f)
    single = json.loads(ml("evaluate", data, "--json", "-").stdout)
    r = ml("evaluate", data, "--weights", DEFAULT_WEIGHTS, "--weights", DEFAULT_WEIGHTS)
    assert r.returncode == 0, r.stderr
    assert "ensemble of fer-compact.pt + fer-compact.pt" in r.stdout
    r = ml(
        "evaluate", data, "--weights", DEFAULT_WEIGHTS, "--weights", DEFAULT_WEIGHTS, "--json", "-"
    )
    both = json.loads(r.stdout)
    assert len(both["weights"]) == 2 and len(both["model_version"]) == 2
    # the mean of two identical members is that member
    assert both["accuracy"] == single["accuracy"]
    assert abs(both["nll"] - single["nll"]) < 1e-6


def test_evaluate_bad_input(tmp_path):
    r = ml("evaluate", tmp_path / "missing")
    assert r.returncode == 2 and "dataset folder not found" in r.stderr
    bad = tmp_path / "w.pt"
    bad.write_bytes(b"nope")
    r = ml("evaluate", tmp_path, "--weights", bad)
    assert r.returncode == 2 and "corrupt" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.fixture
def photos(tmp_path, fer_val):
    happy = int(np.flatnonzero(fer_val.labels == 3)[0])
    frame, _ = scene([fer_val.images[happy]], side=200, seed=1)
    face = tmp_path / "face.jpg"
    cv2.imwrite(str(face), frame)
    empty = tmp_path / "empty.png"
    cv2.imwrite(str(empty), background(seed=5))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff garbage")
    return face, empty, corrupt


def test_predict_images(photos, tmp_path):
    face, empty, corrupt = photos
    r = ml("predict", face, empty, "--annotate", tmp_path / "ann")
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert recs[0]["file"] == str(face) and recs[0]["face"] is True
    assert set(recs[0]) >= {"file", "frame", "t", "box", "label", "confidence", "probs"}
    assert recs[1] == {
        "file": str(empty),
        "frame": 0,
        "t": 0.0,
        "face": False,
        "box": None,
        "label": None,
        "confidence": None,
        "probs": None,
    }
    assert cv2.imread(str(tmp_path / "ann" / "face.annotated.jpg")).shape == (480, 640, 3)


def test_predict_real_photo():
    import tempfile

    import skimage.data as skd  # dev dependency: a real photo

    with tempfile.TemporaryDirectory() as d:
        p = f"{d}/astronaut.png"
        cv2.imwrite(p, cv2.cvtColor(skd.astronaut(), cv2.COLOR_RGB2BGR))
        r = ml("predict", p)
    rec = json.loads(r.stdout.splitlines()[0])
    assert rec["face"] is True and rec["label"] == "happy"  # she is smiling


@pytest.mark.parametrize("out", ["out/", "out", "a/b/out/"])
def test_annotating_one_image_into_a_missing_folder_creates_it(tmp_path, monkeypatch, out):
    from ml.cli import main

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), background(seed=5))
    monkeypatch.chdir(tmp_path)  # "out/" as typed, relative (it was written to a file "out")
    assert main(["predict", str(photo), "--annotate", out]) == 0
    assert cv2.imread(str(tmp_path / out / "photo.annotated.png")).shape == (480, 640, 3)


def test_annotating_to_a_file_cv2_cannot_write_is_a_clean_error(tmp_path, capsys):
    from ml.cli import main

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), background(seed=5))
    assert main(["predict", str(photo), "--annotate", str(tmp_path / "new" / "x.png")]) == 0
    assert (tmp_path / "new" / "x.png").is_file()  # a missing parent folder is created
    assert main(["predict", str(photo), "--annotate", str(tmp_path / "x.nope")]) == 1
    err = capsys.readouterr().err
    assert "could not write" in err and "x.nope" in err and "Traceback" not in err
    video = tmp_path / "clip.mp4"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (640, 480))
    for _ in range(3):
        w.write(background(seed=1))
    w.release()
    (tmp_path / "ann" / "clip.annotated.mp4").mkdir(parents=True)  # in the writer's way
    assert main(["predict", str(video), "--annotate", str(tmp_path / "ann")]) == 1
    assert (
        "could not open " + str(tmp_path / "ann" / "clip.annotated.mp4") in capsys.readouterr().err
    )


def test_predict_missing_and_corrupt_files_fail_but_report_the_rest(photos, tmp_path):
    face, _, corrupt = photos
    r = ml("predict", tmp_path / "nope.jpg", corrupt, face)
    assert r.returncode == 1
    assert "nope.jpg: no such file" in r.stderr and "corrupt.jpg: not a readable image" in r.stderr
    assert json.loads(r.stdout.splitlines()[0])["file"] == str(face)


def test_predict_a_one_pixel_high_image(tmp_path):
    strip = tmp_path / "strip.png"
    cv2.imwrite(str(strip), np.full((1, 1000, 3), 128, np.uint8))
    r = ml("predict", strip)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["face"] is False


def test_predict_video_sampling(fer_val, tmp_path):
    video = tmp_path / "clip.mp4"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (640, 480))
    for k in range(20):
        frame = scene([fer_val.images[k % 5]], side=200, seed=0)[0] if k < 10 else background()
        w.write(frame)
    w.release()
    r = ml("predict", video, "--every-n", "5", "--annotate", tmp_path / "out.mp4")
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["frame"] for x in recs if x["frame"] >= 10] == [10, 15]
    assert all(not x["face"] for x in recs if x["frame"] >= 10)
    assert recs[0]["t"] == 0.0 and {x["frame"] for x in recs} == {0, 5, 10, 15}
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    r = ml("predict", video, "--fps", "0")
    assert r.returncode == 2


def test_export_and_benchmark_commands(tmp_path, fer_root):
    r = ml("export", "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert r.returncode == 0 and (tmp_path / "m.onnx").stat().st_size > 100_000
    r = ml("benchmark", "--seconds", "0.2", "--threads", "1", "--faces", fer_root / "validation")
    assert r.returncode == 0, r.stderr
    assert "faces/s" in r.stdout and "peak memory" in r.stdout
    assert "VNNI" in r.stdout.splitlines()[0]  # int8 speed depends on it: printed with the CPU
    # the deployed model, int8 and fp32, is compared with the baseline as usually run and as
    # optimised (fused, and int8)
    for precision in ("int8", "fp32"):
        for baseline in ("64px", "64px fused", "64px int8"):
            assert f"fer-compact.pt {precision} vs mini-Xception {baseline}: 1 thr" in r.stdout
    r = ml(
        "benchmark", "--seconds", "0.1", "--threads", "1", "--precision", "fp32", "--no-baseline"
    )
    assert r.returncode == 0, r.stderr
    assert "fer-compact.pt fp32" in r.stdout and "int8" not in r.stdout
    for bad in (("--weights", tmp_path / "missing.pt"), ("--threads", "one")):
        r = ml("benchmark", "--seconds", "0.05", "--no-baseline", *bad)
        assert r.returncode == 2 and "Traceback" not in r.stderr, bad
        assert "error" in r.stderr


def test_predict_with_a_bad_ml_precision_is_a_clean_error(tmp_path, monkeypatch, capsys):
    from ml.cli import main

    monkeypatch.setenv("ML_PRECISION", "bogus")
    assert main(["predict", str(tmp_path / "any.jpg")]) == 2
    assert "error: ML_PRECISION must be one of" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["predict", "evaluate", "benchmark"])
def test_a_device_that_does_not_exist_is_a_clean_error(command, tmp_path, capsys):
    from ml.cli import main

    args = {
        "predict": [str(tmp_path / "any.jpg")],
        "evaluate": [str(tmp_path)],
        "benchmark": ["--seconds", "0.05", "--no-baseline"],
    }[command]
    assert main([command, *args, "--device", "gpu"]) == 2
    assert "error: --device 'gpu' is not a device" in capsys.readouterr().err


def test_unknown_command():
    r = ml("frobnicate")
    assert r.returncode == 2 and "unknown command" in r.stderr


def test_annotating_several_inputs_into_a_file_name_is_refused(tmp_path, capsys):
    """`--annotate x.png` with two inputs made a folder named x.png: a typo, said as such."""
    from ml.cli import main

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for p in (a, b):
        cv2.imwrite(str(p), background(seed=5))
    assert main(["predict", str(a), str(b), "--annotate", str(tmp_path / "x.png")]) == 2
    assert "2 inputs need a folder" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
