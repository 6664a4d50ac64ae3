import numpy as np
import pytest
import torch

from ml.export import export_model
from ml.predictor import Predictor, default_weights
from ml.preprocessing import crops_to_tensor


@pytest.fixture(scope="module")
def faces(fer_val):
    return fer_val.images[:64]


def test_torchscript_parity(tmp_path, faces):
    out = export_model(default_weights(), "torchscript", tmp_path / "m.ts")
    ts = torch.jit.load(str(out))
    p = Predictor(precision="fp32")  # the export holds the float network
    x = crops_to_tensor(faces, p.pre)
    with torch.no_grad():
        got = torch.softmax(ts(x) / p.temperature, 1).numpy()
    np.testing.assert_allclose(got, p.predict_faces(faces), atol=1e-5)
    import json

    assert json.loads((tmp_path / "m.ts.json").read_text())["temperature"] == p.temperature


def test_onnx_parity(tmp_path, faces):
    import onnxruntime as ort

    out = export_model(default_weights(), "onnx", tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    p = Predictor(precision="fp32")  # the export holds the float network
    x = crops_to_tensor(faces, p.pre).numpy()
    logits = sess.run(None, {"input": x})[0]
    got = torch.softmax(torch.from_numpy(logits) / p.temperature, 1).numpy()
    np.testing.assert_allclose(got, p.predict_faces(faces), atol=1e-4)
    assert (got.argmax(1) == p.predict_faces(faces).argmax(1)).all()
    import onnx

    meta = {m.key for m in onnx.load(str(out)).metadata_props}
    assert {"class_names", "preprocessing", "source_sha256"} <= meta
