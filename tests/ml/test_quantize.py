"""int8 inference: ``python -m ml quantize``, the checkpoint's int8 section, and the predictor."""

import json

import numpy as np
import pytest
import torch

from ml.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ml.cli import main as ml_main
from ml.predictor import WEIGHTS_DIR, Predictor
from ml.quantize import Int8Unavailable, OnnxRuntimeModule


@pytest.fixture(scope="module")
def real_faces(fer_val):
    idx = np.random.default_rng(0).choice(len(fer_val), 600, replace=False)
    return fer_val.images[idx], fer_val.labels[idx]


@pytest.mark.parametrize("name", ["fer-compact.pt", "fer-fast.pt"])
def test_shipped_weights_run_int8_on_cpu_and_agree_with_fp32(name, real_faces):
    images, labels = real_faces
    int8 = Predictor(WEIGHTS_DIR / name, device="cpu")
    fp32 = Predictor(WEIGHTS_DIR / name, device="cpu", precision="fp32")
    assert int8.precision == "int8" and isinstance(int8.runtime, OnnxRuntimeModule)
    assert fp32.precision == "fp32" and int8.describe()["precision"] == "int8"
    a, b = int8.predict_faces(images), fp32.predict_faces(images)
    np.testing.assert_allclose(a.sum(1), 1.0, atol=1e-5)
    agreement = (a.argmax(1) == b.argmax(1)).mean()
    acc_int8, acc_fp32 = (a.argmax(1) == labels).mean(), (b.argmax(1) == labels).mean()
    print(f"{name}: int8 agrees with fp32 on {agreement:.3f}; acc {acc_int8:.3f} vs {acc_fp32:.3f}")
    assert agreement >= 0.95
    assert abs(acc_int8 - acc_fp32) <= 0.02
    assert np.abs(a - b).max() < 0.35  # close, but not the same network
    assert not np.allclose(a, b, atol=1e-4)
    section = load_checkpoint(WEIGHTS_DIR / name)["int8"]
    assert section["calibration"]["data"].endswith("train")  # never fitted on validation
    assert section["metrics"]["int8"]["accuracy"] >= section["metrics"]["fp32"]["accuracy"] - 0.01


def test_int8_batches_and_threads_give_the_same_answer(real_faces):
    images = real_faces[0][:48]
    pred = Predictor(device="cpu")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = pred.predict_faces(images)
        torch.set_num_threads(2)
        two = pred.predict_faces(images)
    finally:
        torch.set_num_threads(before)
    single = np.concatenate([pred.predict_faces(images[i : i + 1]) for i in range(8)])
    np.testing.assert_allclose(one, two, atol=1e-5)
    np.testing.assert_allclose(single, one[:8], atol=1e-5)
    assert {1, 2} <= set(pred.runtime._sessions)  # one ONNX Runtime session per thread count


def test_int8_session_failing_for_a_new_thread_count_runs_the_batch_on_a_working_one(
    real_faces, monkeypatch, caplog
):
    import onnxruntime

    images = real_faces[0][:16]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pred = Predictor(WEIGHTS_DIR / "fer-fast.pt", device="cpu")
        expected = pred.predict_faces(images)
        calls = []

        def no_memory(*args, **kwargs):
            calls.append(args)
            raise RuntimeError("Failed to allocate memory")

        monkeypatch.setattr(onnxruntime, "InferenceSession", no_memory)
        torch.set_num_threads(2)
        got = pred.predict_faces(images)
        again = pred.predict_faces(images)
    finally:
        torch.set_num_threads(before)
    np.testing.assert_allclose(got, expected, atol=1e-6)  # the batch is answered, not lost
    np.testing.assert_allclose(again, expected, atol=1e-6)
    assert "int8 session for 2 threads failed" in caplog.text
    assert "Failed to allocate memory" in caplog.text
    assert len(calls) == 1  # not retried on every batch


def test_quantize_command_adds_an_int8_network_the_predictor_runs(tmp_path, pattern_folder):
    src = WEIGHTS_DIR / "fer-fast.pt"
    bare = load_checkpoint(src)
    del bare["int8"]
    save_checkpoint(tmp_path / "bare.pt", bare)
    assert Predictor(tmp_path / "bare.pt", device="cpu").precision == "fp32"
    with pytest.raises(CheckpointError, match="no int8"):
        Predictor(tmp_path / "bare.pt", device="cpu", precision="int8")

    out = tmp_path / "q.pt"
    argv = ["quantize", str(pattern_folder), "--weights", str(tmp_path / "bare.pt")]
    assert ml_main([*argv, "--out", str(out), "--images", "50", "--val", str(pattern_folder)]) == 0
    section = load_checkpoint(out)["int8"]
    assert section["calibration"] == {"data": str(pattern_folder), "images": 50, "seed": 0}
    assert section["command"].startswith("python -m ml quantize ")
    assert set(section["metrics"]) >= {"fp32", "int8"} and section["metrics"]["n"] == 84
    pred = Predictor(out, device="cpu")
    assert pred.precision == "int8"
    # the float weights are untouched: the fp32 network still answers as before
    crops = np.random.default_rng(0).integers(0, 256, (6, 48, 48), dtype=np.uint8)
    np.testing.assert_allclose(
        Predictor(out, precision="fp32").predict_faces(crops),
        Predictor(tmp_path / "bare.pt", precision="fp32").predict_faces(crops),
        atol=1e-6,
    )


def test_int8_network_of_other_weights_is_refused(tmp_path, caplog):
    ckpt = load_checkpoint(WEIGHTS_DIR / "fer-fast.pt")
    ckpt["state_dict"] = {k: v.clone() for k, v in ckpt["state_dict"].items()}
    ckpt["state_dict"]["head.weight"] = ckpt["state_dict"]["head.weight"] * 1.01  # "retrained"
    save_checkpoint(tmp_path / "stale.pt", ckpt)
    pred = Predictor(tmp_path / "stale.pt", device="cpu")
    assert pred.precision == "fp32"  # auto falls back, and says why
    assert "belongs to other weights" in caplog.text
    with pytest.raises(Int8Unavailable, match="belongs to other weights"):
        Predictor(tmp_path / "stale.pt", device="cpu", precision="int8")


def _int8_weights(onnx_model: bytes) -> list[np.ndarray]:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(onnx_model).graph
    return [
        numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8
    ]


@pytest.mark.parametrize("name", ["fer-compact.pt", "fer-fast.pt"])
def test_shipped_int8_weights_use_7_bits_so_no_cpu_saturates(name):
    # 8-bit weights give right answers only on CPUs with VNNI; this test checks the stored
    # model itself, so it fails on any machine if weights are quantised to 8 bits again
    weights = _int8_weights(load_checkpoint(WEIGHTS_DIR / name)["int8"]["onnx"].numpy().tobytes())
    assert len(weights) >= 6  # every conv and the head
    # symmetric 7-bit: |w| ≤ 64, so two uint8 × int8 products sum to at most 32,640 < 2^15
    assert all(np.abs(w.astype(int)).max() <= 64 for w in weights)
    assert max(int(np.abs(w).max()) for w in weights) == 64  # and the range is used


def test_int8_model_with_8_bit_weights_is_refused_with_the_reason(tmp_path, caplog):
    ckpt = load_checkpoint(WEIGHTS_DIR / "fer-fast.pt")
    ckpt["int8"]["format_version"] = 1
    save_checkpoint(tmp_path / "v1.pt", ckpt)
    assert Predictor(tmp_path / "v1.pt", device="cpu").precision == "fp32"
    assert "without VNNI" in caplog.text
    with pytest.raises(Int8Unavailable, match="quantize` again"):
        Predictor(tmp_path / "v1.pt", device="cpu", precision="int8")


def test_unreadable_int8_model_falls_back_to_fp32_with_a_reason(tmp_path, caplog):
    ckpt = load_checkpoint(WEIGHTS_DIR / "fer-fast.pt")
    ckpt["int8"]["onnx"] = torch.arange(64, dtype=torch.uint8)  # not an ONNX model
    save_checkpoint(tmp_path / "broken.pt", ckpt)
    assert Predictor(tmp_path / "broken.pt", device="cpu").precision == "fp32"
    assert "ONNX Runtime cannot load the int8 model" in caplog.text
    with pytest.raises(Int8Unavailable):
        Predictor(tmp_path / "broken.pt", device="cpu", precision="int8")


def test_evaluate_reports_the_precision_it_ran_and_refuses_impossible_ones(
    tmp_path, pattern_folder
):
    from tests.ml.test_cli import ml

    r = ml("evaluate", pattern_folder, "--json", "-")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["precision"] == "int8"
    r = ml("evaluate", pattern_folder, "--precision", "fp32", "--json", "-")
    assert json.loads(r.stdout)["precision"] == "fp32"

    bare = load_checkpoint(WEIGHTS_DIR / "fer-fast.pt")
    del bare["int8"]
    save_checkpoint(tmp_path / "bare.pt", bare)
    r = ml("evaluate", pattern_folder, "--weights", tmp_path / "bare.pt", "--precision", "int8")
    assert r.returncode == 2 and "no int8" in r.stderr and "Traceback" not in r.stderr


def test_bad_precision_setting_is_a_clear_error(monkeypatch, pattern_folder):
    from tests.ml.test_cli import ml

    monkeypatch.setenv("ML_PRECISION", "")  # empty is unset, as in the Django settings
    assert Predictor(device="cpu").precision == "int8"
    monkeypatch.setenv("ML_PRECISION", "int4")
    with pytest.raises(ValueError, match="ML_PRECISION must be one of"):
        Predictor(device="cpu")
    for argv in (
        ("evaluate", pattern_folder),
        ("benchmark", "--seconds", "0.05", "--threads", "1", "--no-baseline"),
    ):
        r = ml(*argv)
        assert r.returncode == 2, argv
        assert "ML_PRECISION must be one of" in r.stderr and "Traceback" not in r.stderr


def test_int8_bench_compares_7_and_8_bit_weights_of_the_same_network(pattern_folder, capsys):
    from ml.cli_bench_int8 import main as bench_main

    fast = str(WEIGHTS_DIR / "fer-fast.pt")
    argv = [str(pattern_folder), str(pattern_folder), "--weights", fast, "--images", "16"]
    assert bench_main([*argv, "--seconds", "0.05", "--batch", "8"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if "fer-fast" in line]
    assert [r[1] for r in rows] == ["7-bit", "8-bit"]
    for row in rows:
        assert float(row[2]) > 0 and float(row[3]) > 0  # faces/s at 1 and 2 threads
        assert 0 <= float(row[4]) <= 1 and 0.5 <= float(row[5]) <= 1  # accuracy, = fp32
    assert bench_main([*argv[:3], str(pattern_folder / "missing.pt")]) == 2
    assert "error:" in capsys.readouterr().err


def test_quantize_int8_keeps_weights_to_7_bits_unless_asked_for_8():
    from ml.checkpoint import build_model
    from ml.quantize import quantize_int8

    model = build_model(load_checkpoint(WEIGHTS_DIR / "fer-fast.pt"))
    calibration = np.random.default_rng(0).normal(size=(8, 1, 48, 48)).astype(np.float32)
    seven = _int8_weights(quantize_int8(model, calibration))
    eight = _int8_weights(quantize_int8(model, calibration, weight_bits=8))
    assert max(int(np.abs(w).max()) for w in seven) == 64
    assert max(int(np.abs(w).max()) for w in eight) == 127
    with pytest.raises(ValueError, match="7 or 8"):
        quantize_int8(model, calibration, weight_bits=4)
