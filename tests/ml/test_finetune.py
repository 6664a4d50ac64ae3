"""Fine-tuning on reviewed crops: the learner split, the child checkpoint, the CLI."""

import numpy as np
import pytest
import torch

from ml import cli
from ml.checkpoint import build_model, file_sha256, load_checkpoint, save_checkpoint
from ml.classes import EMOTIONS
from ml.finetune import FinetuneConfig, FinetuneError, finetune, split_by_group
from ml.model import create_model, model_config
from ml.preprocessing import DEFAULT_PREPROCESSING
from tests.ml.conftest import pattern_image, write_image_folder

LEARNERS = ("learner-a1f3", "learner-b2e4", "learner-c3d5", "learner-d4c6")


@pytest.mark.parametrize("seed", range(40))
def test_split_never_puts_a_learner_on_both_sides(seed):
    rng = np.random.default_rng(seed)
    n_groups = int(rng.integers(2, 30))
    groups = rng.integers(0, n_groups, size=int(rng.integers(n_groups, 200))).tolist()
    groups[:n_groups] = range(n_groups)  # every group occurs
    frac = float(rng.uniform(0.05, 0.95))
    train, test = split_by_group(groups, frac, seed)
    g = np.asarray(groups)
    assert set(g[train]).isdisjoint(set(g[test]))
    assert len(train) and len(test)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(groups)))


def test_split_refuses_a_single_learner():
    with pytest.raises(FinetuneError, match="at least 2 learners"):
        split_by_group(["only"] * 10, 0.3, 0)


@pytest.fixture
def parent_path(tmp_path):
    """A tiny, randomly initialised parent carrying an int8 entry and an abstention."""
    torch.manual_seed(0)
    config = model_config("tiny")
    payload = {
        "model_config": config.to_dict(),
        "class_names": list(EMOTIONS),
        "preprocessing": DEFAULT_PREPROCESSING.to_dict(),
        "state_dict": create_model(config).state_dict(),
        "recipe": {"command": "python -m ml train --size tiny"},
        "metrics": {"val": {"accuracy": 0.25}},
        "calibration": {"temperature": 0.9},
        "int8": {"onnx": b"made from the parent's weights"},
        "abstention": {"score": "max_prob", "threshold": 0.4},
    }
    return save_checkpoint(tmp_path / "parent.pt", payload)


def reviewed(n_per_learner: int = 14, learners=LEARNERS, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = [EMOTIONS[i % 7] for i in range(n_per_learner * len(learners))]
    crops = np.stack([pattern_image(EMOTIONS.index(name), rng) for name in labels])
    groups = [g for g in learners for _ in range(n_per_learner)]
    return crops, labels, groups


def test_finetune_writes_a_loadable_child_that_names_its_parent(parent_path, tmp_path):
    fer_val = write_image_folder(tmp_path / "val", per_class=4, seed=1)
    replay = write_image_folder(tmp_path / "train", per_class=4, seed=2)
    parent = load_checkpoint(parent_path)
    crops, labels, groups = reviewed()
    config = FinetuneConfig(epochs=1, batch_size=16, lr=1e-3, replay=20, replay_dir=str(replay))
    result = finetune(
        parent,
        crops,
        labels,
        groups,
        config,
        parent_sha256=file_sha256(parent_path),
        fer_val_dir=fer_val,
        fer_val_limit=20,
    )
    save_checkpoint(tmp_path / "child.pt", result.checkpoint)
    child = load_checkpoint(tmp_path / "child.pt")
    build_model(child)

    recipe = child["recipe"]
    assert recipe["command"] == "finetune"
    assert recipe["parent"]["sha256"] == file_sha256(parent_path)
    assert recipe["finetune_config"]["epochs"] == 1
    assert recipe["learners"] == {"train": 3, "test": 1}
    assert sum(recipe["counts"]["train"].values()) + sum(recipe["counts"]["test"].values()) == 56
    assert not any(g in repr(child) for g in LEARNERS)  # counts only, never learner ids
    assert result.history[0]["n"] == 42 + 20  # three learners' crops and the replay sample

    m = child["metrics"]
    for key, n in (("fer2013_val", 20), ("reviewed_test", 14)):
        assert m[key]["parent"]["n"] == m[key]["child"]["n"] == n
        assert 0 <= m[key]["child"]["accuracy"] <= 1 and "macro_f1" in m[key]["parent"]
    assert m["fer2013_val"]["full_split"] is False
    assert m["val"] == m["fer2013_val"]["child"]

    assert "int8" not in child
    assert child["model_config"] == parent["model_config"]
    assert child["preprocessing"] == parent["preprocessing"]
    # 20 faces cannot support a temperature: the parent's is kept, and says why
    assert child["calibration"]["temperature"] == 0.9
    assert child["calibration"]["refitted"] is False
    assert "abstention" in child


def test_freezing_features_trains_only_the_head(parent_path):
    parent = load_checkpoint(parent_path)
    crops, labels, groups = reviewed()
    config = FinetuneConfig(epochs=1, batch_size=16, lr=1e-2, freeze="features")
    result = finetune(parent, crops, labels, groups, config, parent_sha256="0" * 64)
    before, after = parent["state_dict"], result.checkpoint["state_dict"]
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"head.weight", "head.bias"}  # batch-norm statistics included
    assert result.metrics["fer2013_val"] is None


def test_finetune_without_freezing_changes_the_features(parent_path):
    parent = load_checkpoint(parent_path)
    crops, labels, groups = reviewed()
    config = FinetuneConfig(epochs=1, batch_size=16, lr=1e-3)
    result = finetune(parent, crops, labels, groups, config, parent_sha256="0" * 64)
    before, after = parent["state_dict"], result.checkpoint["state_dict"]
    assert not torch.equal(before["features.0.0.weight"], after["features.0.0.weight"])


def _npz(path, crops, labels, groups):
    np.savez(path, crops=crops, labels=np.asarray(labels), groups=np.asarray(groups))
    return path


def test_cli_writes_the_child_and_prints_both_models(parent_path, tmp_path, capsys):
    data = _npz(tmp_path / "reviewed.npz", *reviewed())
    fer_val = write_image_folder(tmp_path / "val", per_class=3, seed=1)
    out = tmp_path / "child.pt"
    args = ["--weights", parent_path, "--data", data, "--out", out, "--fer-val", fer_val]
    rc = cli.main(["finetune", *map(str, args), "--epochs", "1", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert printed.count("parent") == 2 and printed.count("child") == 2
    child = load_checkpoint(out)
    assert child["recipe"]["argv"].startswith("python -m ml finetune --weights")
    assert child["metrics"]["fer2013_val"]["full_split"] is True


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "not found"),
        ("shape", "N×48×48 uint8"),
        ("label", "unknown label"),
        ("one_learner", "at least 2 learners"),
        ("no_groups", "lacks array"),
    ],
)
def test_cli_refuses_bad_input_with_one_line(parent_path, tmp_path, capsys, case, message):
    crops, labels, groups = reviewed(n_per_learner=7)
    path = tmp_path / "reviewed.npz"
    if case == "shape":
        _npz(path, crops[:, :40, :40], labels, groups)
    elif case == "label":
        _npz(path, crops, ["joy", *labels[1:]], groups)
    elif case == "one_learner":
        _npz(path, crops, labels, ["solo"] * len(labels))
    elif case == "no_groups":
        np.savez(path, crops=crops, labels=np.asarray(labels))
    args = ["--weights", str(parent_path), "--data", str(path), "--out", str(tmp_path / "c.pt")]
    assert cli.main(["finetune", *args, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "c.pt").exists()
