"""``python -m ml train``: train the CNN on an image folder or fer2013.csv.

The command line and the run's outer loop (torchvision-reference style): ``main`` prepares a
:class:`TrainingRun`, then each epoch is :func:`ml.train.train_one_epoch`, an evaluation on
``--val``, and the run folder's checkpoints and logs (:mod:`ml.run_state`); ``--fit-minutes``
and ``--max-minutes`` are the session's :class:`ml.fit.TimeBudget`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ml.augment import AugmentConfig
from ml.checkpoint import CheckpointWriter
from ml.data import FaceDataset, load_dataset
from ml.fit import TimeBudget, command, record_fit
from ml.model import MODEL_SIZES, ModelConfig, count_parameters, create_model, model_config
from ml.predictor import resolve_device
from ml.run_state import Progress, lineage, resume, save_epoch
from ml.train import (
    Distillation,
    SetupError,
    StepContext,
    TrainConfig,
    TrainingError,
    class_weights,
    evaluate,
    load_init,
    load_teacher,
    make_optimizer,
    make_scheduler,
    seed_everything,
    teacher_logit_table,
    train_one_epoch,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ml train", description="Train the emotion CNN.")
    p.add_argument("--data", required=True, help="train set: image folder or fer2013.csv[:Usage]")
    p.add_argument("--val", help="validation set (image folder or csv); best.pt is chosen on it")
    p.add_argument("--out", required=True, help="run folder for checkpoints and logs")
    d = TrainConfig()
    p.add_argument(
        "--size",
        default=d.size,
        choices=list(MODEL_SIZES),
        help="model size: tiny | fast | small | compact | large",
    )
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default=d.optimizer)
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--mixup-alpha", type=float, default=d.mixup_alpha)
    _add_distillation_args(p, d)
    p.add_argument(
        "--class-weight-power",
        type=float,
        default=d.class_weight_power,
        help="loss weight ∝ (1/class frequency)^power; 0 disables",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads, help="CPU threads (0 = torch default)")
    _add_session_args(p)
    return p


def _add_distillation_args(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    p.add_argument(
        "--teacher",
        action="append",
        default=[],
        help="checkpoint to distil from (same input preprocessing); repeat it to distil from "
        "an ensemble (the mean of the teachers' logits)",
    )
    p.add_argument(
        "--kd-alpha",
        type=float,
        default=d.kd_alpha,
        help="weight of the distillation loss (the rest is cross-entropy)",
    )
    p.add_argument("--kd-temperature", type=float, default=d.kd_temperature)
    p.add_argument(
        "--kd-mode",
        choices=["online", "offline"],
        default=d.kd_mode,
        help="online: the teacher labels every augmented view; offline: its logits for each "
        "training image (as is and mirrored) are computed once, far cheaper on a CPU",
    )
    p.add_argument(
        "--init", default="", help="start from this checkpoint's weights (same model size)"
    )


def _add_session_args(p: argparse.ArgumentParser) -> None:
    """Where it runs and how a session is paced (none of it changes what a run computes)."""
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument(
        "--max-minutes",
        type=float,
        default=0,
        help="stop cleanly after this many minutes (resume later); 0 = no limit",
    )
    p.add_argument(
        "--fit-minutes",
        type=float,
        default=0,
        help="fit the run to this many minutes: after the first epoch, --epochs is lowered to "
        "as many epochs as fit (timed at the steady pace), the cosine schedule then runs over "
        "those, and the checkpoints record the run as --epochs N (needs --warmup-epochs >= 1, "
        "so that nothing already run depends on N); 0 = off",
    )
    p.add_argument("--limit", type=int, default=0, help="use only the first N training images")
    p.add_argument("--no-progress", action="store_true")


def check_args(args: argparse.Namespace) -> str | None:
    """The first flag whose value cannot make a run, as an error message (None: all fine)."""
    rules = [
        ("--epochs", args.epochs, args.epochs >= 1, "≥ 1"),
        ("--batch-size", args.batch_size, args.batch_size >= 1, "≥ 1"),
        ("--lr", args.lr, math.isfinite(args.lr) and args.lr > 0, "> 0"),
        ("--kd-temperature", args.kd_temperature, args.kd_temperature > 0, "> 0"),
        ("--kd-alpha", args.kd_alpha, 0 <= args.kd_alpha <= 1, "in [0, 1]"),
        ("--weight-decay", args.weight_decay, args.weight_decay >= 0, "≥ 0"),
        ("--warmup-epochs", args.warmup_epochs, args.warmup_epochs >= 0, "≥ 0"),
        ("--label-smoothing", args.label_smoothing, 0 <= args.label_smoothing < 1, "in [0, 1)"),
        ("--mixup-alpha", args.mixup_alpha, args.mixup_alpha >= 0, "≥ 0"),
        ("--threads", args.threads, args.threads >= 0, "≥ 0 (0: torch's default)"),
        ("--limit", args.limit, args.limit >= 0, "≥ 0"),
        ("--max-minutes", args.max_minutes, args.max_minutes >= 0, "≥ 0"),
        ("--fit-minutes", args.fit_minutes, args.fit_minutes >= 0, "≥ 0"),
        (
            "--warmup-epochs",
            args.warmup_epochs,
            not args.fit_minutes or args.warmup_epochs >= 1,
            "≥ 1 with --fit-minutes (the fitted schedule starts after the first epoch)",
        ),
    ]
    for flag, value, ok, want in rules:
        if not ok:  # NaN fails every comparison, so it lands here too
            return f"{flag} must be {want}, not {value}"
    return None


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        size=args.size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing,
        mixup_alpha=args.mixup_alpha,
        teachers=tuple(args.teacher),
        kd_alpha=args.kd_alpha,
        kd_temperature=args.kd_temperature,
        kd_mode=args.kd_mode,
        init=args.init,
        class_weight_power=args.class_weight_power,
        seed=args.seed,
        threads=args.threads,
    )


@dataclass
class TrainingRun:
    """What the epochs of one ``python -m ml train`` share (torchvision's references keep it in
    the locals of ``main``). Built by :func:`prepare`, in the order of the random numbers."""

    args: argparse.Namespace
    argv: list[str]  # the command line, for the recipe
    cfg: TrainConfig
    device: torch.device
    out: Path
    train_ds: FaceDataset
    val_ds: FaceDataset | None
    model_config: ModelConfig
    model: torch.nn.Module
    steps_per_epoch: int
    ctx: StepContext  # optimizer, scheduler, generator, …
    progress: Progress | None = None  # the epochs done (a resumed run's too)
    kd: Distillation | None = None
    images: torch.Tensor | None = None  # the training set, on the device on a GPU
    labels: torch.Tensor | None = None
    recipe: dict | None = None
    budget: TimeBudget | None = None

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.ctx.optimizer

    @property
    def scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        return self.ctx.scheduler

    @property
    def generator(self) -> torch.Generator:
        return self.ctx.generator


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem, device = check_args(args), None
    if problem is None:
        try:
            device = resolve_device(args.device)
        except ValueError as e:
            problem = str(e)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        run = prepare(args, device, list(sys.argv[1:] if argv is None else argv))
        return run_epochs(run)
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def prepare(args: argparse.Namespace, device: torch.device, argv: list[str]) -> TrainingRun:
    """Data, model, teacher, optimizer, the resumed state: everything before the first epoch."""
    cfg = config_from_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":  # fixed 48×48 batches: let cuDNN pick its fastest convolutions once
        torch.backends.cudnn.benchmark = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    train_ds, val_ds = _load_data(args, cfg.seed)
    mcfg = model_config(cfg.size)
    model = create_model(mcfg).to(device).to(memory_format=torch.channels_last)
    teacher = load_teacher(cfg.teachers, device) if cfg.teachers else None
    if cfg.init:
        load_init(model, cfg.init, mcfg)
    optimizer = make_optimizer(model, cfg)
    steps_per_epoch = max(1, len(train_ds) // cfg.batch_size)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    run = TrainingRun(
        args=args,
        argv=argv,
        cfg=cfg,
        device=device,
        out=out,
        train_ds=train_ds,
        val_ds=val_ds,
        model_config=mcfg,
        model=model,
        steps_per_epoch=steps_per_epoch,
        ctx=_step_context(args, cfg, device, optimizer, scheduler, train_ds),
    )
    run.progress = _resume(run)
    _place_data(run, teacher)
    run.recipe = _recipe(run)
    print(f"model {mcfg.name}: {count_parameters(model):,} params on {device}", file=sys.stderr)
    return run


def _step_context(args, cfg: TrainConfig, device, optimizer, scheduler, train_ds) -> StepContext:
    # On a GPU the training set, the augmentation's random numbers and the loss all stay on
    # the device: a step then waits for nothing from the host (see StepContext).
    resident = device.type == "cuda"
    return StepContext(
        optimizer,
        scheduler,
        weights=class_weights(train_ds.labels, cfg.class_weight_power).to(device),
        aug=AugmentConfig(),
        generator=torch.Generator(device=device if resident else "cpu").manual_seed(cfg.seed),
        device=device,
        amp=resident,
        progress=not args.no_progress,
        sync_every_step=not resident,
    )


def _load_data(args: argparse.Namespace, seed: int) -> tuple[FaceDataset, FaceDataset | None]:
    progress = not args.no_progress
    train_ds = load_dataset(args.data, progress=progress)
    if args.limit:
        keep = np.random.default_rng(seed).permutation(len(train_ds))[: args.limit]
        train_ds = FaceDataset(train_ds.images[keep], train_ds.labels[keep])
    val_ds = load_dataset(args.val, progress=progress) if args.val else None
    if len(train_ds) == 0:
        raise SetupError("empty training set")
    print(f"train: {len(train_ds)} images {train_ds.class_counts}", file=sys.stderr)
    if val_ds is not None:
        print(f"val:   {len(val_ds)} images", file=sys.stderr)
    return train_ds, val_ds


def _resume(run: TrainingRun) -> Progress:
    if run.args.resume and run.last_path.exists():
        return resume(run.last_path, run, keep_fit=bool(run.args.fit_minutes))
    if run.args.resume:
        print(f"--resume: no {run.last_path} yet, starting fresh", file=sys.stderr)
    return Progress()


def _place_data(run: TrainingRun, teacher: torch.nn.Module | None) -> None:
    """The training set as tensors (on a GPU, on it) and the distillation, if any."""
    cfg, device = run.cfg, run.device
    run.images = torch.from_numpy(run.train_ds.images)
    run.labels = torch.from_numpy(run.train_ds.labels)
    if device.type == "cuda":  # 28,709 faces are 66 MB as uint8
        run.images, run.labels = run.images.to(device), run.labels.to(device)
        if teacher is not None:
            teacher = teacher.to(memory_format=torch.channels_last)
    if teacher is None:
        return
    run.kd = Distillation(cfg.kd_temperature, cfg.kd_alpha, teacher=teacher)
    if cfg.kd_mode == "offline":
        # kept on the training device: the per-step lookup then never syncs with the host
        table = teacher_logit_table(teacher, run.train_ds.images, device, run.ctx.progress)
        run.kd = Distillation(cfg.kd_temperature, cfg.kd_alpha, table=table.to(device))


def _recipe(run: TrainingRun) -> dict:
    """How this run was made, with the lineage of the checkpoints it starts from or learns from."""
    cfg, args = run.cfg, run.args
    recipe = {
        "command": command(run.argv),
        "train_config": asdict(cfg),
        "augment": run.ctx.aug.to_dict(),
        "train_data": str(args.data),
        "val_data": str(args.val),
        "n_train": len(run.train_ds),
        "device": run.device.type,
        "torch": str(torch.__version__),
    }
    if cfg.init:
        recipe["init_from"] = lineage(cfg.init)
    if cfg.teachers:
        recipe["teacher_from"] = [lineage(path) for path in cfg.teachers]
    if run.progress.fitted:
        record_fit(recipe, run.argv, run.progress.fitted)
    return recipe


def run_epochs(run: TrainingRun) -> int:
    """The epochs left, each saved as it ends; the exit code."""
    cfg, start_epoch = run.cfg, run.progress.epoch
    run.budget = TimeBudget(run.args.fit_minutes, run.args.max_minutes, run.progress.fitted)
    writer = CheckpointWriter(background=_background_checkpoints(run.device))
    try:
        epoch = start_epoch
        while epoch < cfg.epochs:  # not range(): --fit-minutes may lower cfg.epochs
            run.budget.fit(
                epoch,
                history=run.progress.history,
                fresh=start_epoch == 0,
                steps_per_epoch=run.steps_per_epoch,
                run=run,
            )
            if epoch >= cfg.epochs:
                break
            try:
                row, summary = run_epoch(run, epoch)
            except TrainingError as e:
                kept = f"; {run.last_path} holds epoch {epoch}" if epoch > 0 else ""
                print(f"error: epoch {epoch + 1}: {e}{kept}", file=sys.stderr)
                return 2
            t_save = time.monotonic()
            save_epoch(writer, run, row, summary)
            run.budget.save_seconds = time.monotonic() - t_save
            epoch += 1
            if run.budget.out_of_time(epoch, cfg.epochs):
                print(
                    f"time budget reached after epoch {epoch}; continue with --resume",
                    file=sys.stderr,
                )
                return 0
        writer.close()  # best.pt may still be on its way to the disk
        _report_done(run)
        return 0
    finally:
        writer.close()  # every checkpoint is on disk before main returns


def run_epoch(run: TrainingRun, epoch: int) -> tuple[dict, dict | None]:
    """Train and evaluate one epoch: its row of the logs and the validation summary."""
    t0 = time.monotonic()
    row = {"epoch": epoch + 1}
    row.update(train_one_epoch(run.model, run.images, run.labels, run.ctx, run.cfg, run.kd))
    row["train_seconds"] = round(time.monotonic() - t0, 3)
    row["lr"] = run.optimizer.param_groups[0]["lr"]
    summary = None
    if run.val_ds is not None:
        summary = evaluate(run.model, run.val_ds, run.device)
        row.update(
            val_acc=summary["accuracy"],
            val_macro_f1=summary["macro_f1"],
            val_nll=summary["nll"],
            val_ece=summary["ece"],
        )
    row["seconds"] = round(time.monotonic() - t0, 1)
    run.progress.history.append(row)
    print(json.dumps(row), file=sys.stderr)
    return row, summary


def _report_done(run: TrainingRun) -> None:
    best_path = run.out / "best.pt"
    if best_path.exists():
        what = "val acc" if run.val_ds is not None else "score"
        print(f"done: best {what} {run.progress.best_acc:.4f} -> {best_path}", file=sys.stderr)
    else:
        print(f"done: {run.cfg.epochs} epochs; no {best_path} was written", file=sys.stderr)


def _background_checkpoints(device: torch.device) -> bool:
    return device.type == "cuda"
