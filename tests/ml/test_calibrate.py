import numpy as np
import pytest

from ml.calibrate import fit_temperature
from ml.checkpoint import load_checkpoint
from ml.predictor import Predictor, default_weights


def _logits(scale: float, n: int = 4000, seed: int = 0):
    """Logits whose *true* temperature is 1; multiplying by ``scale`` mis-calibrates them."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, (n, 7))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(7, p=row) for row in p])
    return z * scale, y


@pytest.mark.parametrize(("scale", "expected"), [(3.0, 3.0), (0.5, 0.5), (1.0, 1.0)])
def test_fit_temperature_recovers_the_miscalibration(scale, expected):
    z, y = _logits(scale)
    assert fit_temperature(z, y) == pytest.approx(expected, rel=0.1)


def test_calibrate_command_writes_a_temperature_the_predictor_uses(tmp_path, pattern_folder):
    from ml.cli import main

    out = tmp_path / "cal.pt"
    assert main(["calibrate", str(pattern_folder), "--out", str(out)]) == 0
    cal = load_checkpoint(out)["calibration"]
    assert cal["temperature"] > 0 and cal["n"] == 84
    assert cal["nll_after"] <= cal["nll_before"] + 1e-9
    p = Predictor(out)
    assert p.temperature == cal["temperature"]
    base = Predictor(default_weights())
    crops = np.random.default_rng(0).integers(0, 255, (5, 48, 48), dtype=np.uint8)
    # the same weights at another temperature: same argmax, different confidence
    a, b = p.predict_faces(crops), base.predict_faces(crops)
    assert (a.argmax(1) == b.argmax(1)).all()
    assert not np.allclose(a, b)
