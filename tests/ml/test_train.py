import json
import re

import numpy as np
import pytest
import torch

from ml import cli_train, run_state, train
from ml import fit as ml_fit
from ml.checkpoint import CheckpointWriter, load_checkpoint
from ml.data import load_image_folder
from ml.model import create_model, model_config
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
    assert cli_train.main(args) == 0


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
    real_load = run_state.load_checkpoint
    monkeypatch.setattr(
        run_state,
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
        ("--fit-minutes", "-1", "--fit-minutes must be ≥ 0"),
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
    assert cli_train.main([*args, "--batch-size", "16", "--epochs", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "error: epoch 1: training loss is nan" in err and "lower --lr" in err
    assert not (out / "best.pt").exists() and "done:" not in err


def test_without_val_best_pt_is_written_and_done_names_it_only_if_it_exists(
    pattern_folder, tmp_path, capsys
):
    # the score is then -train_loss: below the old starting best of -1.0, best.pt never came
    args = ["--data", str(pattern_folder), "--out", str(tmp_path / "run"), "--size", "tiny"]
    args += ["--batch-size", "16", "--epochs", "1", "--no-progress", "--threads", "1"]
    assert cli_train.main(args) == 0
    assert (tmp_path / "run" / "best.pt").exists()
    assert f"-> {tmp_path / 'run' / 'best.pt'}" in capsys.readouterr().err
    (tmp_path / "run" / "best.pt").unlink()
    assert cli_train.main([*args, "--resume"]) == 0  # nothing left to run, no best.pt
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
    assert cli_train.main([*args, "--teacher", str(other / "64.pt")]) == 2
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
    assert cli_train.main([*args, "--init", str(teacher_run / "best.pt"), "--no-progress"]) == 2
    assert "different model config" in capsys.readouterr().err


def test_fit_minutes_needs_the_first_epoch_to_be_warm_up(tmp_path, capsys):
    # the schedule's length is chosen after epoch 1: no step before may depend on it
    argv = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--fit-minutes", "5"]
    assert _exit_code([*argv, "--warmup-epochs", "0.5"]) == 2
    assert "--warmup-epochs must be ≥ 1 with --fit-minutes" in capsys.readouterr().err


def _epochs(folder, *, sync: bool, epochs: int = 2, lr: float = 0.05, mixup: float = 0.0):
    """``epochs`` calls of train_one_epoch on a fresh tiny model, seeded alike every time."""
    torch.set_num_threads(1)
    np.random.seed(0)
    torch.manual_seed(0)
    ds = load_image_folder(folder)
    model = create_model(model_config("tiny")).to(memory_format=torch.channels_last)
    cfg = train.TrainConfig(size="tiny", batch_size=16, lr=lr, mixup_alpha=mixup)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    images, labels = torch.from_numpy(ds.images), torch.from_numpy(ds.labels)
    g = torch.Generator().manual_seed(0)
    ctx = train.StepContext(opt, sched, None, train.AugmentConfig(), g, "cpu", sync_every_step=sync)
    stats = [train.train_one_epoch(model, images, labels, ctx, cfg) for _ in range(epochs)]
    return model, stats


@pytest.mark.parametrize("mixup", [0.0, 0.4])
def test_deferred_sync_trains_the_same_weights(pattern_folder, mixup):
    """A GPU run reads its loss back once an epoch (sync_every_step=False): the same steps,
    the same weights and the same epoch figures as reading it every step."""
    (ma, sa), (mb, sb) = (_epochs(pattern_folder, sync=s, mixup=mixup) for s in (True, False))
    a, b = ma.state_dict(), mb.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    for x, y in zip(sa, sb, strict=True):
        assert x["train_acc"] == y["train_acc"] and 0 < x["train_acc"] <= 1
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-6)
        assert x["seconds_per_step"] > 0 and y["seconds_per_step"] > 0


def test_deferred_sync_names_the_first_diverging_step(pattern_folder):
    messages = []
    for sync in (True, False):
        with pytest.raises(train.TrainingError) as e:
            _epochs(pattern_folder, sync=sync, epochs=1, lr=1e12)
        messages.append(str(e.value))
    # read back at the end of the epoch, it names the same step as a per-step check
    assert messages[0] == messages[1]
    assert re.match(r"training loss is (nan|inf) at step \d+: the run diverged", messages[1])


def test_fit_epochs_counts_the_epochs_that_end_in_the_budget():
    fit = ml_fit.fit_epochs
    # 100 s budget, 12 s gone in epoch 1, then 200 steps × 0.04 s + 2 s validation = 10 s each
    kw = dict(spent_s=12, seconds_per_step=0.04, steps_per_epoch=200, other_s=2)
    assert fit(100, **kw, max_epochs=300) == {
        "epochs": 9,  # 1 + floor(88 / 10)
        "fit_minutes": 100 / 60,
        "epoch_seconds": 10.0,
    }
    assert fit(100, **kw, max_epochs=5)["epochs"] == 5  # --epochs stays the cap
    assert fit(10, **kw, max_epochs=300)["epochs"] == 1  # over budget already: epoch 1 only
    assert fit(100, **dict(kw, other_s=-1), max_epochs=300)["epochs"] == 12  # rounding noise


def test_fit_minutes_records_the_epochs_as_a_replayable_command(
    pattern_folder, tmp_path, monkeypatch, capsys
):
    calls = []

    def fit(budget_s, **kw):  # the timing is the machine's: fix it, test the plumbing
        calls.append((budget_s, kw))
        return {"epochs": 3, "fit_minutes": budget_s / 60, "epoch_seconds": 1.5}

    monkeypatch.setattr(ml_fit, "fit_epochs", fit)
    _run(pattern_folder, tmp_path / "fitted", "--epochs", "8", "--fit-minutes", "2", "--resume")
    [(budget, kw)] = calls
    assert budget == 120 and kw["max_epochs"] == 8 and kw["steps_per_epoch"] == 5
    assert kw["seconds_per_step"] > 0 and kw["spent_s"] > 0
    assert "fitted to 2 min: 3 epochs of ≈ 1.5 s" in capsys.readouterr().err
    rows = (tmp_path / "fitted" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 3  # the cosine ran over 3 epochs and ended there
    ck = load_checkpoint(tmp_path / "fitted" / "last.pt")
    recipe = ck["recipe"]
    assert recipe["train_config"]["epochs"] == 3 and recipe["fitted"]["epochs"] == 3
    assert "--fit-minutes 2" in recipe["fitted"]["command"]
    command = recipe["command"].split()
    assert command[-2:] == ["--epochs", "3"] and "--fit-minutes" not in command
    assert "--resume" not in command and command.count("--epochs") == 1
    assert ck["train_state"]["fitted"]["epochs"] == 3

    # the recorded command, run again, is the same run: same schedule, same weights
    argv = command[4:]  # after "python -m ml train"
    argv[argv.index("--out") + 1] = str(tmp_path / "replay")
    assert cli_train.main(argv) == 0
    replay = load_checkpoint(tmp_path / "replay" / "last.pt")
    assert replay["epoch"] == 3
    for k, v in ck["state_dict"].items():
        torch.testing.assert_close(v, replay["state_dict"][k], rtol=0, atol=1e-6)


def test_a_fitted_run_resumes_on_its_fitted_schedule(pattern_folder, tmp_path, monkeypatch):
    fits = []

    def fit(budget_s, **kw):
        fits.append(kw)
        return {"epochs": 4, "fit_minutes": budget_s / 60, "epoch_seconds": 1.0}

    monkeypatch.setattr(ml_fit, "fit_epochs", fit)
    run, flags = tmp_path / "run", ("--epochs", "9", "--fit-minutes", "1")
    _run(pattern_folder, run, *flags, "--max-minutes", "1e-9")  # stops after epoch 1
    assert load_checkpoint(run / "last.pt")["epoch"] == 1 and not fits
    _run(pattern_folder, run, *flags, "--max-minutes", "1e-9", "--resume")  # fits, epoch 2
    assert len(fits) == 1 and load_checkpoint(run / "last.pt")["epoch"] == 2
    _run(pattern_folder, run, *flags, "--resume")  # keeps the fitted 4: no second fit
    assert len(fits) == 1 and load_checkpoint(run / "last.pt")["epoch"] == 4
    _run(pattern_folder, tmp_path / "straight", "--epochs", "4")
    a = load_checkpoint(run / "last.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "straight" / "last.pt")["state_dict"]
    for k in a:  # the same as a plain 4-epoch run
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_background_checkpoints_hold_what_was_handed_over(tmp_path):
    writer = CheckpointWriter(background=True)
    weights = torch.zeros(3)
    history = [{"epoch": 1}]
    payload = {"model_config": {}, "class_names": [], "preprocessing": {}, "epoch": 1}
    writer.save(tmp_path / "a.pt", {**payload, "state_dict": {"w": weights}, "h": history})
    weights.add_(1)  # the training loop goes on at once
    history.append({"epoch": 2})
    (tmp_path / "file").write_text("")
    writer.save(tmp_path / "file" / "b.pt", {**payload, "state_dict": {}})  # cannot be written
    with pytest.raises(OSError):
        writer.close()  # waits for both, raises the failed one
    saved = torch.load(tmp_path / "a.pt", weights_only=True)
    assert saved["state_dict"]["w"].tolist() == [0.0, 0.0, 0.0] and saved["h"] == [{"epoch": 1}]


def test_a_run_with_background_checkpoints_writes_and_resumes_the_same(
    pattern_folder, tmp_path, monkeypatch
):
    _run(pattern_folder, tmp_path / "plain", "--epochs", "3")
    monkeypatch.setattr(cli_train, "_background_checkpoints", lambda device: True)  # as on a GPU
    _run(pattern_folder, tmp_path / "bg", "--epochs", "3", "--max-minutes", "1e-9")
    assert load_checkpoint(tmp_path / "bg" / "last.pt")["epoch"] == 1  # on disk at return
    _run(pattern_folder, tmp_path / "bg", "--epochs", "3", "--resume")
    for name in ("last.pt", "best.pt"):
        a = load_checkpoint(tmp_path / "plain" / name)
        b = load_checkpoint(tmp_path / "bg" / name)
        assert a["epoch"] == b["epoch"]
        for k in a["state_dict"]:
            torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=1e-6)


def test_the_replay_command_drops_pacing_flags_however_they_were_spelt():
    """argparse takes unambiguous abbreviations: `--fit 5` left in the replay would refit it."""
    recipe = {"train_config": {"epochs": 300}}
    argv = [
        "--data",
        "d",
        "--fit",
        "5",
        "--epoch=300",
        "--max-min",
        "6",
        "--res",
        "--size",
        "large",
    ]
    ml_fit.record_fit(recipe, argv, {"epochs": 42, "fit_minutes": 5, "epoch_seconds": 7.0})
    assert recipe["command"] == "python -m ml train --data d --size large --epochs 42"
    assert recipe["train_config"]["epochs"] == 42
    assert recipe["fitted"]["command"].endswith("--res --size large")
    parsed = cli_train.build_parser().parse_args([*argv, "--out", "o"])  # the spellings are real
    assert (parsed.fit_minutes, parsed.epochs, parsed.max_minutes, parsed.resume) == (
        5,
        300,
        6,
        True,
    )
