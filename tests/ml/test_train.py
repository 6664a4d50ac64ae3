import json

import numpy as np
import pytest
import torch

from ml import train
from ml.checkpoint import load_checkpoint
from ml.data import load_image_folder
from ml.predictor import Predictor
from tests.ml.conftest import write_image_folder


def _run(folder, out, *extra):
    args = [
        "--data",
        str(folder),
        "--val",
        str(folder),
        "--out",
        str(out),
        "--size",
        "tiny",
        "--batch-size",
        "16",
        "--lr",
        "0.05",
        "--no-progress",
        "--threads",
        "1",
        *extra,
    ]
    assert train.main(args) == 0


def test_loss_falls_and_checkpoint_reloads_exactly(pattern_folder, tmp_path):
    out = tmp_path / "run"
    _run(pattern_folder, out, "--epochs", "12")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] * 0.8
    assert rows[-1]["val_acc"] > 0.5  # 7 well-separated patterns: far above chance (0.14)
    assert (out / "metrics.csv").read_text().startswith("epoch,")

    ck = load_checkpoint(out / "best.pt")
    assert ck["class_names"][0] == "angry" and ck["preprocessing"]["input_size"] == 48
    assert "python -m ml train" in ck["recipe"]["command"]
    assert ck["metrics"]["val"]["accuracy"] == max(r["val_acc"] for r in rows)
    assert "train_state" not in ck  # release checkpoints carry no optimizer state

    ds = load_image_folder(pattern_folder)
    a = Predictor(out / "best.pt").predict_faces(ds.images)
    b = Predictor(out / "best.pt").predict_faces(ds.images)
    np.testing.assert_array_equal(a, b)
    # the reloaded model reproduces the validation accuracy recorded at save time
    assert (a.argmax(1) == ds.labels).mean() == ck["metrics"]["val"]["accuracy"]


def test_resume_continues_to_the_same_weights(pattern_folder, tmp_path):
    _run(pattern_folder, tmp_path / "straight", "--epochs", "3")
    _run(pattern_folder, tmp_path / "split", "--epochs", "3", "--max-minutes", "1e-9")
    first = load_checkpoint(tmp_path / "split" / "last.pt")
    assert first["epoch"] == 1  # stopped by the time budget after one epoch
    _run(pattern_folder, tmp_path / "split", "--epochs", "3", "--resume")
    a = load_checkpoint(tmp_path / "straight" / "last.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "split" / "last.pt")["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_resume_with_mixup_continues_to_the_same_weights(pattern_folder, tmp_path):
    # mixup draws λ from numpy's global RNG: a resume that reseeded it replayed epoch 1's λs
    mix = ("--epochs", "2", "--mixup-alpha", "0.4")
    _run(pattern_folder, tmp_path / "straight", *mix)
    _run(pattern_folder, tmp_path / "split", *mix, "--max-minutes", "1e-9")
    assert load_checkpoint(tmp_path / "split" / "last.pt")["epoch"] == 1
    _run(pattern_folder, tmp_path / "split", *mix, "--resume")
    a = load_checkpoint(tmp_path / "straight" / "last.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "split" / "last.pt")["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_resume_hands_the_rng_setters_cpu_byte_tensors(pattern_folder, tmp_path, monkeypatch):
    """On a GPU, last.pt loaded with map_location=<the run's device> put the saved RNG states
    on CUDA and torch.set_rng_state refused them. Without a GPU here, a load mapped to any
    device but "cpu" lands on 'meta', standing in for CUDA."""
    run = tmp_path / "run"
    _run(pattern_folder, run, "--epochs", "2", "--max-minutes", "1e-9")
    real_load = train.load_checkpoint
    monkeypatch.setattr(
        train,
        "load_checkpoint",
        lambda path, map_location="cpu": real_load(
            path, map_location="cpu" if map_location == "cpu" else "meta"
        ),
    )
    seen = []
    real_set = torch.set_rng_state

    def set_rng_state(state):
        seen.append((state.device.type, state.dtype))
        real_set(state)

    monkeypatch.setattr(torch, "set_rng_state", set_rng_state)
    _run(pattern_folder, run, "--epochs", "2", "--resume")
    assert seen == [("cpu", torch.uint8)]
    assert load_checkpoint(run / "last.pt")["epoch"] == 2


def test_class_weights_and_schedule():
    w = train.class_weights(np.array([0] * 90 + [1] * 10), power=1.0)
    assert w[1] / w[0] == 9.0 and float(w[2]) == 0.0
    assert train.class_weights(np.array([0, 1]), power=0.0)[:2].tolist() == [1.0, 1.0]
    assert train.lr_factor(0, 100, 10) == 0.1
    assert train.lr_factor(10, 100, 10) == 1.0
    assert abs(train.lr_factor(100, 100, 10)) < 1e-9


def test_bad_training_input_exits_nonzero(tmp_path, capsys):
    from ml.cli import main

    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err


def _exit_code(argv) -> int:
    from ml.cli import main

    try:
        return main(argv)
    except SystemExit as e:  # argparse's own refusals (--size's choices)
        return e.code


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--epochs", "0", "--epochs must be ≥ 1"),
        ("--batch-size", "0", "--batch-size must be ≥ 1"),
        ("--lr", "0", "--lr must be > 0"),
        ("--lr", "nan", "--lr must be > 0"),
        ("--lr", "inf", "--lr must be > 0"),
        ("--kd-temperature", "0", "--kd-temperature must be > 0"),
        ("--kd-temperature", "-2", "--kd-temperature must be > 0"),
        ("--threads", "-1", "--threads must be ≥ 0"),
        ("--size", "huge", "invalid choice: 'huge'"),
        ("--device", "gpu0", "--device 'gpu0' is not a device"),
        ("--device", "meta", "the models run on auto, cpu or cuda"),
    ],
)
def test_bad_flags_exit_2_before_the_data_is_read(tmp_path, capsys, flag, value, message):
    missing = str(tmp_path / "missing")  # checked first: the flag's error, not the data's
    assert _exit_code(["train", "--data", missing, "--out", str(tmp_path / "o"), flag, value]) == 2
    err = capsys.readouterr().err
    assert message in err and "dataset folder not found" not in err
    assert not (tmp_path / "o").exists()


def test_cuda_asked_for_without_cuda_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a GPU machine
    args = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--device", "cuda"]
    assert _exit_code(args) == 2
    assert "CUDA is not available on this machine" in capsys.readouterr().err


def test_a_diverging_run_stops_with_a_clear_error(pattern_folder, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--data", str(pattern_folder), "--out", str(out), "--size", "tiny", "--lr", "1e12"]
    assert train.main([*args, "--batch-size", "16", "--epochs", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "error: epoch 1: training loss is nan" in err and "lower --lr" in err
    assert not (out / "best.pt").exists() and "done:" not in err


def test_without_val_best_pt_is_written_and_done_names_it_only_if_it_exists(
    pattern_folder, tmp_path, capsys
):
    # the score is then -train_loss: below the old starting best of -1.0, best.pt never came
    args = ["--data", str(pattern_folder), "--out", str(tmp_path / "run"), "--size", "tiny"]
    args += ["--batch-size", "16", "--epochs", "1", "--no-progress", "--threads", "1"]
    assert train.main(args) == 0
    assert (tmp_path / "run" / "best.pt").exists()
    assert f"-> {tmp_path / 'run' / 'best.pt'}" in capsys.readouterr().err
    (tmp_path / "run" / "best.pt").unlink()
    assert train.main([*args, "--resume"]) == 0  # nothing left to run, no best.pt
    err = capsys.readouterr().err
    assert "no " + str(tmp_path / "run" / "best.pt") + " was written" in err and "->" not in err


def _untrained(path, fields=None, **extra):
    """A valid tiny checkpoint without training; ``fields`` are added to its model config."""
    from ml.checkpoint import save_checkpoint
    from ml.classes import EMOTIONS
    from ml.model import create_model, model_config
    from ml.preprocessing import DEFAULT_PREPROCESSING

    mcfg = model_config("tiny")
    payload = {
        "model_config": {**mcfg.to_dict(), **(fields or {})},
        "class_names": list(EMOTIONS),
        "preprocessing": DEFAULT_PREPROCESSING.to_dict(),
        "state_dict": create_model(mcfg).state_dict(),
        "epoch": 1,
        **extra,
    }
    return save_checkpoint(path, payload)


@pytest.mark.parametrize("how", ["--init", "--resume"])
def test_a_model_config_with_an_unknown_field_is_a_clean_error(tmp_path, capsys, how):
    data = write_image_folder(tmp_path / "d", per_class=2)
    out = tmp_path / "run"
    ck = _untrained(out / "last.pt", fields={"attention": True})  # a newer code's field
    args = ["train", "--data", str(data), "--out", str(out), "--size", "tiny", "--no-progress"]
    assert _exit_code([*args, *(["--init", str(ck)] if how == "--init" else ["--resume"])]) == 2
    err = capsys.readouterr().err
    assert "model config not readable by this code" in err and "attention" in err


def test_resuming_from_a_release_checkpoint_says_it_is_not_resumable(tmp_path, capsys):
    data = write_image_folder(tmp_path / "d", per_class=2)
    out = tmp_path / "run"
    _untrained(out / "last.pt")  # best.pt copied over last.pt: no train_state
    args = ["train", "--data", str(data), "--out", str(out), "--size", "tiny", "--resume"]
    assert _exit_code([*args, "--no-progress"]) == 2
    assert "is not a resumable checkpoint: it has no train_state" in capsys.readouterr().err


@pytest.fixture
def teacher_run(pattern_folder, tmp_path):
    run = tmp_path / "teacher"
    _run(pattern_folder, run, "--epochs", "8")
    return run


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_distillation_from_a_teacher(pattern_folder, tmp_path, teacher_run, mode):
    student = tmp_path / "student"
    _run(
        pattern_folder,
        student,
        "--epochs",
        "8",
        "--size",
        "fast",
        "--teacher",
        str(teacher_run / "best.pt"),
        "--kd-alpha",
        "0.7",
        "--kd-mode",
        mode,
    )
    ck = load_checkpoint(student / "best.pt")
    assert ck["model_config"]["name"] == "fast"
    assert list(ck["recipe"]["train_config"]["teachers"]) == [str(teacher_run / "best.pt")]
    assert ck["recipe"]["train_config"]["kd_mode"] == mode
    assert f"--kd-mode {mode}" in ck["recipe"]["command"]
    # the teacher's own recipe travels with the student: the chain is reproducible
    [lineage] = ck["recipe"]["teacher_from"]
    assert (
        lineage["recipe"]["command"]
        == load_checkpoint(teacher_run / "best.pt")["recipe"]["command"]
    )
    assert len(lineage["sha256"]) == 64
    rows = [json.loads(line) for line in (student / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] and rows[-1]["val_acc"] > 0.4


def test_teacher_logit_table_holds_each_image_as_is_and_mirrored(teacher_run, pattern_folder):
    from ml.checkpoint import build_model
    from ml.evaluate import predict_logits

    teacher = build_model(load_checkpoint(teacher_run / "best.pt")).eval()
    images = load_image_folder(pattern_folder).images[:10]
    table = train.teacher_logit_table(teacher, images, "cpu", progress=False)
    assert table.shape == (10, 2, 7)
    np.testing.assert_allclose(table[:, 0].numpy(), predict_logits(teacher, images), atol=1e-4)
    mirrored = predict_logits(teacher, images[:, :, ::-1].copy())
    np.testing.assert_allclose(table[:, 1].numpy(), mirrored, atol=1e-4)


def test_distillation_from_an_ensemble_of_teachers(pattern_folder, tmp_path, teacher_run):
    from ml.checkpoint import build_model
    from ml.evaluate import predict_logits
    from ml.model import LogitEnsemble

    other = tmp_path / "teacher2"
    _run(pattern_folder, other, "--epochs", "3", "--size", "fast", "--seed", "5")
    paths = [teacher_run / "best.pt", other / "best.pt"]
    student = tmp_path / "student"
    _run(
        pattern_folder,
        student,
        "--epochs",
        "6",
        "--size",
        "fast",
        *[a for p in paths for a in ("--teacher", str(p))],
        "--kd-mode",
        "offline",
    )
    ck = load_checkpoint(student / "best.pt")
    assert list(ck["recipe"]["train_config"]["teachers"]) == [str(p) for p in paths]
    lineage = ck["recipe"]["teacher_from"]
    assert [t["path"] for t in lineage] == [str(p) for p in paths]
    assert lineage[1]["recipe"]["command"] == load_checkpoint(paths[1])["recipe"]["command"]
    assert ck["metrics"]["val"]["accuracy"] > 0.4
    # the offline table of an ensemble holds the mean of its members' logits
    members = [build_model(load_checkpoint(p)).eval() for p in paths]
    images = load_image_folder(pattern_folder).images[:10]
    table = train.teacher_logit_table(LogitEnsemble(members), images, "cpu", progress=False)
    mean = (predict_logits(members[0], images) + predict_logits(members[1], images)) / 2
    np.testing.assert_allclose(table[:, 0].numpy(), mean, atol=1e-4)


def test_a_teacher_with_other_preprocessing_is_refused(pattern_folder, tmp_path, capsys):
    from ml.checkpoint import save_checkpoint

    other = tmp_path / "other"
    _run(pattern_folder, other, "--epochs", "1")
    ck = load_checkpoint(other / "best.pt")
    ck["preprocessing"]["input_size"] = 64
    save_checkpoint(other / "64.pt", ck)
    args = ["--data", str(pattern_folder), "--out", str(tmp_path / "s"), "--no-progress"]
    assert train.main([*args, "--teacher", str(other / "64.pt")]) == 2
    assert "same input preprocessing" in capsys.readouterr().err


def test_init_starts_from_a_checkpoint_and_refuses_another_size(
    pattern_folder, tmp_path, teacher_run, capsys
):
    from ml.checkpoint import save_checkpoint

    # a checkpoint written before ModelConfig grew its ``arch`` field still initialises a run
    old = load_checkpoint(teacher_run / "best.pt")
    del old["model_config"]["arch"]
    save_checkpoint(teacher_run / "old.pt", old)
    out = tmp_path / "finetune"
    # a learning rate of ~0 keeps the weights where --init put them
    _run(
        pattern_folder, out, "--epochs", "1", "--lr", "1e-12", "--init", str(teacher_run / "old.pt")
    )
    a = load_checkpoint(teacher_run / "best.pt")["state_dict"]
    b = load_checkpoint(out / "last.pt")["state_dict"]
    for k in a:
        if a[k].is_floating_point() and "running" not in k:
            torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    assert load_checkpoint(out / "best.pt")["recipe"]["init_from"]["path"].endswith("old.pt")
    args = ["--data", str(pattern_folder), "--out", str(tmp_path / "x"), "--size", "fast"]
    assert train.main([*args, "--init", str(teacher_run / "best.pt"), "--no-progress"]) == 2
    assert "different model config" in capsys.readouterr().err
