"""Selective classification maths on known arrays, and ``python -m ml risk-coverage``."""

import shutil

import numpy as np
import pytest

from ml.checkpoint import load_checkpoint
from ml.selective import (
    at_threshold,
    choose_threshold,
    default_threshold,
    risk_coverage,
    scores,
)
from tests.ml.conftest import write_image_folder
from tests.ml.test_cli import ml


def two_class(top: list[float], correct: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose top probability is ``top`` (class 0) and labels right or wrong as given."""
    p = np.array([[t, 1 - t] for t in top])
    y = np.array([0 if c else 1 for c in correct])
    return p, y


def test_curve_on_known_arrays():
    p, y = two_class([0.9, 0.8, 0.7, 0.6], [True, True, False, True])
    rc = risk_coverage(p, y)
    c = rc["max_prob"]
    assert rc["n"] == 4 and rc["accuracy"] == 0.75
    assert c["thresholds"].tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6])
    assert c["coverage"].tolist() == [0.25, 0.5, 0.75, 1.0]
    assert c["accuracy"].tolist() == pytest.approx([1.0, 1.0, 2 / 3, 0.75])
    # AURC: the mean selective risk over the four coverages
    assert c["aurc"] == pytest.approx((0 + 0 + 1 / 3 + 0.25) / 4)
    # the margin of a two-class row is 2·top − 1: the same order, the same curve
    assert rc["margin"]["aurc"] == pytest.approx(c["aurc"])
    assert scores(p)["margin"] == pytest.approx([0.8, 0.6, 0.4, 0.2])


def test_tied_scores_enter_together():
    p, y = two_class([0.7, 0.7, 0.6], [True, False, True])
    c = risk_coverage(p, y)["max_prob"]
    assert c["coverage"].tolist() == pytest.approx([2 / 3, 1.0])
    assert c["accuracy"].tolist() == pytest.approx([0.5, 2 / 3])


def test_margin_differs_from_max_prob_with_three_classes():
    p = np.array([[0.5, 0.45, 0.05], [0.4, 0.3, 0.3]])
    s = scores(p)
    assert s["max_prob"] == pytest.approx([0.5, 0.4])
    assert s["margin"] == pytest.approx([0.05, 0.1])  # the other order


def test_at_threshold_abstains_below_it():
    p, y = two_class([0.9, 0.55, 0.5], [True, False, True])
    assert at_threshold(p, y, 0.55) == {"threshold": 0.55, "coverage": 2 / 3, "accuracy": 0.5}
    assert at_threshold(p, y, 0.95)["accuracy"] is None


def test_choose_threshold_takes_the_highest_coverage_reaching_the_target():
    # sorted by score: right, right, right, right, wrong, wrong, right, wrong
    top = [0.95, 0.9, 0.85, 0.8, 0.7, 0.65, 0.6, 0.55]
    p, y = two_class(top, [True, True, True, True, False, False, True, False])
    a = choose_threshold(p, y, target=0.8)
    # at t<=0.70: 4/5 = 0.8 reached; lower thresholds take in a wrong one first
    assert a["threshold"] == pytest.approx(0.66) and a["target_met"]
    assert a["coverage"] == pytest.approx(5 / 8) and a["selective_accuracy"] == pytest.approx(0.8)
    assert a["score"] == "max_prob" and "0.80" in a["rule"]
    assert a["curve"][0] == [0.0, 1.0, 0.625] and len(a["curve"]) == 100


def test_an_unreachable_target_is_said():
    p, y = two_class([0.9, 0.8, 0.7], [False, True, False])
    a = choose_threshold(p, y, target=0.99)
    assert not a["target_met"] and a["selective_accuracy"] == 0.5


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="N×C"):
        risk_coverage(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ValueError):
        choose_threshold(np.zeros((0, 7)), np.zeros(0))


def test_default_threshold_falls_back():
    assert default_threshold({}, "int8") == 0.0  # no abstention: never abstain
    ck = {"abstention": {"threshold": 0.5, "by_precision": {"int8": {"threshold": 0.6}}}}
    assert default_threshold(ck, "int8") == 0.6
    assert default_threshold(ck, "fp32") == 0.5


@pytest.fixture
def tiny(tmp_path):
    weights = tmp_path / "fast.pt"
    from ml.predictor import WEIGHTS_DIR

    shutil.copy(WEIGHTS_DIR / "fer-fast.pt", weights)
    data = write_image_folder(tmp_path / "data", per_class=4)
    return weights, data


def test_cli_prints_the_table_and_writes_per_precision(tiny, tmp_path):
    weights, data = tiny
    before = load_checkpoint(weights)
    png = tmp_path / "rc.png"
    r = ml(
        "risk-coverage",
        "--weights",
        weights,
        "--data",
        data,
        "--precision",
        "fp32",
        "--plot",
        png,
        "--write",
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "n=28" in lines[0] and "precision=fp32" in lines[0]
    for t in ("0.40", "0.50", "0.60"):
        assert any(line.split()[:1] == [t] for line in lines)
    assert sum("<- chosen" in line for line in lines) == 1
    assert png.stat().st_size > 1000
    after = load_checkpoint(weights)
    section = after["abstention"]
    assert section["by_precision"]["fp32"]["split"] == str(data)
    assert section["threshold"] == section["by_precision"]["fp32"]["threshold"]
    # every other key kept as it was
    assert set(after) - {"abstention"} == set(before) - {"abstention"}
    for k, v in before["state_dict"].items():
        assert after["state_dict"][k].equal(v)
    assert after["int8"].keys() == before["int8"].keys()

    r = ml("risk-coverage", "--weights", weights, "--data", data, "--precision", "int8", "--write")
    assert r.returncode == 0, r.stderr
    section = load_checkpoint(weights)["abstention"]
    assert set(section["by_precision"]) == {"fp32", "int8"}
    # the top level stays fp32's (the trained network's)
    assert section["threshold"] == section["by_precision"]["fp32"]["threshold"]


@pytest.mark.parametrize("bad", ["data", "weights", "empty"])
def test_cli_bad_input_is_one_line_and_exit_2(tiny, tmp_path, bad):
    weights, data = tiny
    if bad == "data":
        data = tmp_path / "missing"
    elif bad == "weights":
        weights = tmp_path / "missing.pt"
    else:
        (tmp_path / "empty").mkdir()
        data = tmp_path / "empty"
    r = ml("risk-coverage", "--weights", weights, "--data", data, "--write")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error:")
