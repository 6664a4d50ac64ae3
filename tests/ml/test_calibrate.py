import numpy as np
import pytest

from ml.calibrate import CalibrationError, checked_temperature, fit_temperature
from ml.checkpoint import load_checkpoint
from ml.classes import EMOTIONS
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


def _degenerate(kind: str, n: int = 500):
    """All right by a margin of 10 (NLL falls as T → 0) or all wrong (falls as T → ∞)."""
    y = np.random.default_rng(0).integers(0, 7, n)
    z = np.zeros((n, 7))
    z[np.arange(n), y if kind == "separable" else (y + 1) % 7] = 10.0
    return z, y


@pytest.mark.parametrize(("kind", "bound"), [("separable", 0.05), ("all_wrong", 20.0)])
def test_degenerate_logits_keep_t_bounded_and_are_refused(kind, bound):
    # the search was unbounded: T = 0.06 or 1.6e7 was written into the checkpoint
    z, y = _degenerate(kind)
    assert fit_temperature(z, y) == pytest.approx(bound)
    with pytest.raises(CalibrationError, match="ran into its bound"):
        checked_temperature(z, y)


def test_too_few_samples_are_refused_and_t_stays_1_unless_nll_improves():
    z, y = _logits(1.0, n=150)
    with pytest.raises(CalibrationError, match="150 labelled images are too few"):
        checked_temperature(z, y)
    assert 0.5 < checked_temperature(z, y, min_samples=100) < 2
    # perfectly calibrated logits (p = 0.4 on the top class, which is right 4 times in 10;
    # 0.1 on each other, right once in 10 each): no T beats 1, which is kept exactly
    top = np.repeat(np.arange(70) % 7, 10)
    z = np.where(np.arange(7) == top[:, None], np.log(0.4), np.log(0.1))
    y = np.array([(k + [0, 0, 0, 0, 1, 2, 3, 4, 5, 6][i % 10]) % 7 for i, k in enumerate(top)])
    assert fit_temperature(z, y) == 1.0


def test_calibrate_command_refuses_a_small_or_degenerate_set(tmp_path, pattern_folder, capsys):
    from ml.cli import main

    out = tmp_path / "cal.pt"
    assert main(["calibrate", str(pattern_folder), "--out", str(out)]) == 2
    assert "84 labelled images are too few" in capsys.readouterr().err and not out.exists()
    # on these synthetic patterns the shipped model is at chance: T ran off to ~1e5
    args = ["calibrate", str(pattern_folder), "--out", str(out), "--min-samples", "50"]
    assert main(args) == 2
    assert "ran into its bound (20" in capsys.readouterr().err and not out.exists()


def _val_subset(fer_root, root, per_class=30):
    for cls in EMOTIONS:
        (root / cls).mkdir(parents=True)
        for f in sorted((fer_root / "validation" / cls).iterdir())[:per_class]:
            (root / cls / f.name).symlink_to(f)
    return root


def test_calibrate_command_writes_a_temperature_the_predictor_uses(tmp_path, fer_root):
    from ml.cli import main

    data = _val_subset(fer_root, tmp_path / "val")  # 30 real faces a class: 210 ≥ --min-samples
    out = tmp_path / "cal.pt"
    assert main(["calibrate", str(data), "--out", str(out)]) == 0
    cal = load_checkpoint(out)["calibration"]
    assert 0.05 < cal["temperature"] < 20 and cal["n"] == 210
    assert cal["nll_after"] <= cal["nll_before"] + 1e-9
    p = Predictor(out)
    assert p.temperature == cal["temperature"]
    base = Predictor(default_weights())
    crops = np.random.default_rng(0).integers(0, 255, (5, 48, 48), dtype=np.uint8)
    # the same weights at another temperature: same argmax, different confidence
    a, b = p.predict_faces(crops), base.predict_faces(crops)
    assert (a.argmax(1) == b.argmax(1)).all()
    assert not np.allclose(a, b)


def test_calibrate_half_stores_float16_weights_every_reader_loads(tmp_path, fer_root, capsys):
    """--half: how a 7.8 M-param GPU model fits the device tool's 16 MiB files (and the repo)."""
    import torch

    from ml.checkpoint import save_checkpoint
    from ml.cli import main
    from ml.data import load_image_folder

    data = _val_subset(fer_root, tmp_path / "val")
    # the shipped file carries an int8 network made from its float32 weights: refused
    half = tmp_path / "half.pt"
    args = ["calibrate", str(data), "--out", str(half), "--half"]
    assert main(args) == 2
    assert "carries an int8 network" in capsys.readouterr().err and not half.exists()

    ck = load_checkpoint(default_weights())
    del ck["int8"]
    full = save_checkpoint(tmp_path / "fp32.pt", ck)
    assert main([*args, "--weights", str(full)]) == 0
    sd = load_checkpoint(half)["state_dict"]
    assert {v.dtype for v in sd.values() if v.is_floating_point()} == {torch.float16}
    assert half.stat().st_size < 0.55 * full.stat().st_size
    p = Predictor(half, precision="fp32")
    assert {prm.dtype for prm in p.model.parameters()} == {torch.float32}
    faces = load_image_folder(data).images
    a = p.predict_faces(faces)
    b = Predictor(full, precision="fp32").predict_faces(faces)
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.99
    assert 0.05 < p.temperature < 20
