"""Training: ``train_one_epoch`` / ``evaluate`` / ``main`` kept apart (torchvision-reference style).

CPU and CUDA run the same code; AMP (bf16 autocast) is used on CUDA only. Every epoch appends
to ``metrics.csv``/``metrics.jsonl``, rewrites ``last.pt`` (resumable) and, when validation
accuracy improves, ``best.pt`` (release format: no optimizer state). All writes are atomic, so
a run killed at any moment resumes with ``--resume`` from its last finished epoch.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import shlex
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ml.augment import AugmentConfig, augment_batch
from ml.checkpoint import (
    CheckpointError,
    file_sha256,
    load_checkpoint,
    model_config_of,
    save_checkpoint,
)
from ml.classes import EMOTIONS, NUM_CLASSES
from ml.data import FaceDataset, load_dataset
from ml.evaluate import predict_logits, predict_probs
from ml.metrics import classification_summary
from ml.model import (
    MODEL_SIZES,
    LogitEnsemble,
    count_parameters,
    create_model,
    model_config,
)
from ml.predictor import resolve_device
from ml.preprocessing import DEFAULT_PREPROCESSING


@dataclass
class TrainConfig:
    size: str = "compact"
    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.0
    teachers: tuple[str, ...] = ()  # checkpoints to distil from (several: their mean logits)
    kd_mode: str = "online"  # "online": teacher sees each augmented view; "offline": see below
    kd_alpha: float = 0.5
    kd_temperature: float = 4.0
    class_weight_power: float = 0.5
    seed: int = 0
    threads: int = 0
    init: str = ""  # checkpoint whose weights start the run (same model config)


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss); the CLI reports it as one line, exit 2."""


def class_weights(labels: np.ndarray, power: float) -> torch.Tensor:
    """Inverse-frequency weights raised to ``power`` (0 = unweighted), mean-normalised."""
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(np.float64)
    w = np.where(counts > 0, (counts.sum() / np.maximum(counts, 1)) ** power, 0.0)
    w = w / (w[counts > 0].mean() if (counts > 0).any() else 1.0)
    return torch.tensor(w, dtype=torch.float32)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_one_epoch(
    model,
    optimizer,
    scheduler,
    images,
    labels,
    cfg: TrainConfig,
    weights,
    aug: AugmentConfig,
    generator: torch.Generator,
    device,
    amp: bool,
    progress: bool = True,
    teacher: torch.nn.Module | None = None,
    teacher_table: torch.Tensor | None = None,
    sync_every_step: bool = True,
) -> dict:
    """One pass over the training set. Distillation comes from ``teacher`` (run on every
    augmented view) or from ``teacher_table`` (N×2×C teacher logits of each training image,
    as is and mirrored, computed once: see :func:`teacher_logit_table`).

    ``images``/``labels`` may live on the training device and ``generator`` on it too; then
    no step copies anything from the host. ``sync_every_step=False`` (a GPU) keeps the loss
    and accuracy on the device and reads them back once, at the end of the epoch (and every
    ``PROGRESS_EVERY`` steps for the progress bar), so the host queues the next steps while
    the GPU works; a non-finite loss is then reported at the end of the epoch, naming its
    first step, before anything is saved. The weights are the same either way.

    Also returns ``seconds_per_step``: the steady pace, timed over the second half of the
    epoch (after warm-up costs such as cuDNN's algorithm search), for ``--fit-minutes``.
    """
    model.train()
    pre = DEFAULT_PREPROCESSING
    n = len(labels)
    perm = torch.randperm(n, generator=generator, device=generator.device)
    total_loss, correct, seen = 0.0, 0, 0
    step_losses: list[torch.Tensor] = []
    starts = range(0, n - cfg.batch_size + 1 if n >= cfg.batch_size else 1, cfg.batch_size)
    half, t_half = len(starts) // 2, None
    steps = starts
    if progress:
        from tqdm import tqdm

        steps = tqdm(starts, desc="train", unit="batch", leave=False, file=sys.stderr)
    for k, start in enumerate(steps):
        if k == half:
            _synchronize(device)
            t_half = time.perf_counter()
        idx = perm[start : start + cfg.batch_size]
        x = images[idx].to(device, non_blocking=True).float().div_(255).unsqueeze(1)
        y = labels[idx].to(device, non_blocking=True)
        x, flipped = augment_batch(x, aug, generator, return_flip=True)
        x = (x - pre.mean) / pre.std
        tau = cfg.kd_temperature
        t_probs = None
        if teacher_table is not None:
            t_logits = teacher_table[idx.to(device), flipped.long()]
            t_probs = F.softmax(t_logits.float() / tau, 1)
        y_soft = None
        if cfg.mixup_alpha > 0:
            lam = float(np.random.beta(cfg.mixup_alpha, cfg.mixup_alpha))
            j = torch.randperm(len(idx), generator=generator, device=generator.device).to(device)
            x = lam * x + (1 - lam) * x[j]
            y_soft = (lam, y[j])
            if t_probs is not None:
                t_probs = lam * t_probs + (1 - lam) * t_probs[j]
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        logits = logits.float()
        loss = F.cross_entropy(logits, y, weight=weights, label_smoothing=cfg.label_smoothing)
        if y_soft is not None:
            lam, y2 = y_soft
            loss = lam * loss + (1 - lam) * F.cross_entropy(
                logits, y2, weight=weights, label_smoothing=cfg.label_smoothing
            )
        if teacher is not None:  # knowledge distillation (Hinton et al. 2015) on the same view
            with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=amp):
                t_probs = F.softmax(teacher(x).float() / tau, 1)
        if t_probs is not None:
            kd = F.kl_div(F.log_softmax(logits / tau, 1), t_probs, reduction="batchmean")
            loss = (1 - cfg.kd_alpha) * loss + cfg.kd_alpha * kd * tau * tau
        if sync_every_step:
            loss_value = loss.item()
            if not math.isfinite(loss_value):  # stop before the step spreads it into the weights
                raise _diverged(loss_value, k, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        hits = (logits.argmax(1) == y).sum()
        if sync_every_step:
            total_loss += loss_value * len(idx)
            correct += hits.item()
        else:
            step_losses.append(loss.detach() * len(idx))
            correct = correct + hits  # a device tensor: no wait for the GPU
        seen += len(idx)
        if progress and (sync_every_step or k % PROGRESS_EVERY == PROGRESS_EVERY - 1):
            so_far = total_loss if sync_every_step else float(torch.stack(step_losses).sum())
            steps.set_postfix(loss=f"{so_far / seen:.3f}", acc=f"{int(correct) / seen:.3f}")
    _synchronize(device)
    pace = (time.perf_counter() - t_half) / (len(starts) - half) if t_half is not None else 0.0
    if step_losses:  # read back once: the first non-finite step, else the epoch's sums
        sums = torch.stack(step_losses).double().cpu()
        bad = (~torch.isfinite(sums)).nonzero()
        if len(bad):
            k = int(bad[0])
            raise _diverged(float(sums[k]), k, cfg)
        total_loss = float(sums.sum())
    correct = int(correct)
    return {
        "train_loss": total_loss / max(seen, 1),
        "train_acc": correct / max(seen, 1),
        "seconds_per_step": pace,
    }


#: a deferred-sync run (GPU) reads its loss back for the progress bar every this many steps
PROGRESS_EVERY = 25


def _diverged(loss_value: float, step: int, cfg: TrainConfig) -> TrainingError:
    return TrainingError(
        f"training loss is {loss_value} at step {step + 1}: "
        f"the run diverged (lower --lr, now {cfg.lr:g})"
    )


def _synchronize(device) -> None:
    """Wait for the device's queued work, so that a host timer measures it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def teacher_logit_table(teacher, images: np.ndarray, device, progress: bool = True) -> torch.Tensor:
    """N×2×C logits of ``teacher`` for every image as is ([:, 0]) and mirrored ([:, 1]).

    Offline distillation: computed once, so a small student trains at its own speed instead
    of paying a large teacher's forward pass on every step. The student still sees augmented
    views; its target is the teacher's answer on the clean face with the same mirroring.
    """
    from ml.runtime import optimize_for_inference

    teacher = optimize_for_inference(teacher, device)  # fused on CPU: about twice as fast
    views = [images, np.ascontiguousarray(images[:, :, ::-1])]
    out = []
    for k, v in enumerate(views):
        if progress:
            print(f"teacher logits: view {k + 1}/2", file=sys.stderr)
        out.append(torch.from_numpy(predict_logits(teacher, v, device=device)))
    return torch.stack(out, 1)


def evaluate(model, ds: FaceDataset, device, tta: bool = False) -> dict:
    probs = predict_probs(model, ds.images, tta=tta, device=device)
    return classification_summary(probs, ds.labels)


def _rng_state() -> dict:
    """Every global RNG a training step draws from: torch's (dropout; CUDA's too on a GPU),
    numpy's (the mixup λ) and Python's, as values a ``weights_only`` load accepts."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": json.dumps([name, keys.tolist(), pos, has_gauss, gauss]),
        "python": json.dumps(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    """Restore :func:`_rng_state`; the RNG setters take CPU ByteTensors only."""
    torch.set_rng_state(state["torch"].cpu())
    if "numpy" in state:  # last.pt files written before it was saved lack it
        name, keys, pos, has_gauss, gauss = json.loads(state["numpy"])
        np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    if "python" in state:
        version, internal, gauss = json.loads(state["python"])
        random.setstate((version, tuple(internal), gauss))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([t.cpu() for t in cuda])


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
    p.add_argument(
        "--class-weight-power",
        type=float,
        default=d.class_weight_power,
        help="loss weight ∝ (1/class frequency)^power; 0 disables",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads, help="CPU threads (0 = torch default)")
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
    return p


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = check_args(args)
    if problem is None:
        try:
            device = resolve_device(args.device)
        except ValueError as e:
            problem = str(e)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    cfg = TrainConfig(
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
    if args.threads:
        torch.set_num_threads(args.threads)
    amp = device.type == "cuda"
    if amp:  # fixed 48×48 batches: let cuDNN pick its fastest convolutions once
        torch.backends.cudnn.benchmark = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    train_ds = load_dataset(args.data, progress=progress)
    if args.limit:
        keep = np.random.default_rng(cfg.seed).permutation(len(train_ds))[: args.limit]
        train_ds = FaceDataset(train_ds.images[keep], train_ds.labels[keep])
    val_ds = load_dataset(args.val, progress=progress) if args.val else None
    if len(train_ds) == 0:
        print("error: empty training set", file=sys.stderr)
        return 2
    print(f"train: {len(train_ds)} images {train_ds.class_counts}", file=sys.stderr)
    if val_ds is not None:
        print(f"val:   {len(val_ds)} images", file=sys.stderr)

    mcfg = model_config(cfg.size)
    model = create_model(mcfg).to(device).to(memory_format=torch.channels_last)
    teacher = None
    if cfg.teachers:
        from ml.checkpoint import build_model, preprocessing_of

        members = []
        for path in cfg.teachers:
            tck = load_checkpoint(path)
            if preprocessing_of(tck) != DEFAULT_PREPROCESSING:
                print(
                    f"error: teacher {path} must use the same input preprocessing", file=sys.stderr
                )
                return 2
            members.append(build_model(tck))
        teacher = (members[0] if len(members) == 1 else LogitEnsemble(members)).to(device).eval()
        for prm in teacher.parameters():
            prm.requires_grad_(False)
    if cfg.init:
        ick = load_checkpoint(cfg.init)
        if model_config_of(ick, cfg.init) != mcfg:  # older files lack new defaults
            print(f"error: --init {cfg.init} has a different model config", file=sys.stderr)
            return 2
        model.load_state_dict(ick["state_dict"])
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=True,
            weight_decay=cfg.weight_decay,
        )
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(train_ds) // cfg.batch_size)
    warmup = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    # cfg.epochs is read at every step: --fit-minutes may lower it after the first epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, steps_per_epoch * cfg.epochs, warmup)
    )
    aug = AugmentConfig()
    weights = class_weights(train_ds.labels, cfg.class_weight_power).to(device)
    # On a GPU the training set, the augmentation's random numbers and the loss all stay on
    # the device: a step then waits for nothing from the host (see train_one_epoch).
    resident = device.type == "cuda"
    generator = torch.Generator(device=device if resident else "cpu").manual_seed(cfg.seed)
    fitted = None  # {"epochs": N, ...} once --fit-minutes has chosen N ({}: it cannot)
    save_seconds = 0.0  # what writing the first epoch's checkpoints took (for the fit)

    # -inf: without --val the score is -train_loss, often below -1 (best.pt was then never
    # written)
    start_epoch, best_acc, history = 0, -math.inf, []
    last_path, best_path = out / "last.pt", out / "best.pt"
    if args.resume and last_path.exists():
        # loaded on the CPU: the RNG states must stay CPU ByteTensors (set_rng_state refuses
        # CUDA ones) and optimizer.load_state_dict moves its state to the parameters' device
        ck = load_checkpoint(last_path, map_location="cpu")
        if model_config_of(ck, last_path) != mcfg:
            print(f"error: {last_path} was trained with a different model config", file=sys.stderr)
            return 2
        ts = ck.get("train_state")
        if not isinstance(ts, dict):
            raise CheckpointError(
                f"{last_path} is not a resumable checkpoint: it has no train_state "
                "(a release file such as best.pt?)"
            )
        try:
            model.load_state_dict(ck["state_dict"])
            optimizer.load_state_dict(ts["optimizer"])
            scheduler.load_state_dict(ts["scheduler"])
            generator.set_state(ts["generator"].cpu())
            _set_rng_state(ts["rng"])
            start_epoch, best_acc, history = ck["epoch"], ts["best_acc"], ts["history"]
            if args.fit_minutes and ts.get("fitted"):  # fitted before: keep that schedule
                fitted = ts["fitted"]
                cfg.epochs = int(fitted["epochs"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(
                f"{last_path}: its train_state does not fit this run: {e}"
            ) from None
        print(f"resumed from {last_path} at epoch {start_epoch}", file=sys.stderr)
    elif args.resume:
        print(f"--resume: no {last_path} yet, starting fresh", file=sys.stderr)

    imgs = torch.from_numpy(train_ds.images)
    labs = torch.from_numpy(train_ds.labels)
    if resident:  # 28,709 faces are 66 MB as uint8
        imgs, labs = imgs.to(device), labs.to(device)
        if teacher is not None:
            teacher = teacher.to(memory_format=torch.channels_last)
    teacher_table = None
    if teacher is not None and cfg.kd_mode == "offline":
        # kept on the training device: the per-step lookup then never syncs with the host
        teacher_table = teacher_logit_table(teacher, train_ds.images, device, progress).to(device)
        teacher = None
    argv = list(sys.argv[1:] if argv is None else argv)
    recipe = {
        "command": _command(argv),
        "train_config": asdict(cfg),
        "augment": aug.to_dict(),
        "train_data": str(args.data),
        "val_data": str(args.val),
        "n_train": len(train_ds),
        "device": device.type,
        "torch": str(torch.__version__),
    }
    # lineage: how the checkpoints this run starts from or learns from were made
    if cfg.init:
        recipe["init_from"] = _lineage(cfg.init)
    if cfg.teachers:
        recipe["teacher_from"] = [_lineage(path) for path in cfg.teachers]
    if fitted:
        _record_fit(recipe, argv, fitted)
    print(f"model {mcfg.name}: {count_parameters(model):,} params on {device}", file=sys.stderr)
    writer = CheckpointWriter(background=_background_checkpoints(device))
    try:
        t_start = time.monotonic()
        epoch = start_epoch
        while epoch < cfg.epochs:  # not range(): --fit-minutes may lower cfg.epochs
            if args.fit_minutes and fitted is None and epoch >= 1:
                if epoch > 1:  # the cosine has run: a new length would change what is done
                    print(
                        f"warning: --fit-minutes ignored: {last_path} is past its first epoch "
                        f"without a fitted schedule; it runs to --epochs {cfg.epochs}",
                        file=sys.stderr,
                    )
                    fitted = {}
                else:  # after the first epoch (the warm-up), before the cosine's first step
                    first = history[0]
                    fitted = fit_epochs(
                        args.fit_minutes * 60,
                        spent_s=(time.monotonic() - t_start)
                        if start_epoch == 0
                        else first["seconds"],
                        seconds_per_step=first.get("seconds_per_step", 0.0),
                        steps_per_epoch=steps_per_epoch,
                        other_s=first["seconds"] - first.get("train_seconds", 0.0) + save_seconds,
                        max_epochs=cfg.epochs,
                    )
                    cfg.epochs = fitted["epochs"]
                    _record_fit(recipe, argv, fitted)
                    print(
                        f"fitted to {args.fit_minutes:g} min: {cfg.epochs} epochs of "
                        f"≈ {fitted['epoch_seconds']:.1f} s (record: {recipe['command']})",
                        file=sys.stderr,
                    )
                    if epoch >= cfg.epochs:
                        break
            t0 = time.monotonic()
            row = {"epoch": epoch + 1}
            try:
                stats = train_one_epoch(
                    model,
                    optimizer,
                    scheduler,
                    imgs,
                    labs,
                    cfg,
                    weights,
                    aug,
                    generator,
                    device,
                    amp,
                    progress,
                    teacher=teacher,
                    teacher_table=teacher_table,
                    sync_every_step=not resident,
                )
            except TrainingError as e:
                kept = f"; {last_path} holds epoch {epoch}" if epoch > 0 else ""
                print(f"error: epoch {epoch + 1}: {e}{kept}", file=sys.stderr)
                return 2
            row.update(stats)
            row["train_seconds"] = round(time.monotonic() - t0, 3)
            row["lr"] = optimizer.param_groups[0]["lr"]
            summary = None
            if val_ds is not None:
                summary = evaluate(model, val_ds, device)
                row.update(
                    val_acc=summary["accuracy"],
                    val_macro_f1=summary["macro_f1"],
                    val_nll=summary["nll"],
                    val_ece=summary["ece"],
                )
            row["seconds"] = round(time.monotonic() - t0, 1)
            history.append(row)
            print(json.dumps(row), file=sys.stderr)
            score = row.get("val_acc", -row["train_loss"])
            base = {
                "model_config": mcfg.to_dict(),
                "class_names": list(EMOTIONS),
                "preprocessing": DEFAULT_PREPROCESSING.to_dict(),
                "recipe": recipe,
                "epoch": epoch + 1,
            }
            t_save = time.monotonic()
            if score > best_acc:
                best_acc = score
                metrics = {"epoch": epoch + 1, "val": summary} if summary else {"epoch": epoch + 1}
                writer.save(
                    best_path,
                    {
                        **base,
                        "metrics": metrics,
                        "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                    },
                )
            writer.save(
                last_path,
                {
                    **base,
                    "metrics": {"last": row},
                    "state_dict": model.state_dict(),
                    "train_state": {
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "generator": generator.get_state(),
                        "rng": _rng_state(),
                        "best_acc": best_acc,
                        "history": history,
                        "fitted": fitted,
                    },
                },
            )
            _write_logs(out, history)
            save_seconds = time.monotonic() - t_save
            epoch += 1
            if (
                args.max_minutes
                and (time.monotonic() - t_start) / 60 > args.max_minutes
                and epoch < cfg.epochs
            ):
                print(
                    f"time budget reached after epoch {epoch}; continue with --resume",
                    file=sys.stderr,
                )
                return 0
        writer.close()  # best.pt may still be on its way to the disk
        if best_path.exists():
            what = "val acc" if val_ds is not None else "score"
            print(f"done: best {what} {best_acc:.4f} -> {best_path}", file=sys.stderr)
        else:
            print(f"done: {cfg.epochs} epochs; no {best_path} was written", file=sys.stderr)
        return 0

    finally:
        writer.close()  # every checkpoint is on disk before main returns


def fit_epochs(
    budget_s: float,
    *,
    spent_s: float,
    seconds_per_step: float,
    steps_per_epoch: int,
    other_s: float,
    max_epochs: int,
) -> dict:
    """How many epochs (at most ``max_epochs``, at least the one already run) end within
    ``budget_s`` seconds when ``spent_s`` are gone and each further epoch takes its steps at
    the steady pace plus ``other_s`` (validation, checkpoints)."""
    per_epoch = max(seconds_per_step * steps_per_epoch + max(other_s, 0.0), 1e-9)
    more = max(0, int((budget_s - spent_s) // per_epoch))
    return {
        "epochs": max(1, min(max_epochs, 1 + more)),
        "fit_minutes": budget_s / 60,
        "epoch_seconds": round(per_epoch, 3),
    }


class CheckpointWriter:
    """Writes checkpoints in the order given. With ``background`` (a GPU run) each is written by
    one helper thread from a CPU copy taken when it is handed over, so the training loop does
    not wait for the disk: a ``large`` ``last.pt`` is 62 MB, against epochs of seconds. A
    failed write is raised at the next ``save`` or at ``close``, which waits for them all."""

    def __init__(self, background: bool):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="checkpoint") if background else None
        self._pending: list[Future] = []

    def save(self, path: Path, payload: dict) -> None:
        if self._pool is None:
            save_checkpoint(path, payload)
            return
        self._check(wait=False)
        self._pending.append(self._pool.submit(save_checkpoint, path, _snapshot(payload)))

    def _check(self, wait: bool) -> None:
        still = []
        for f in self._pending:
            if wait or f.done():
                f.result()  # re-raises the write's error
            else:
                still.append(f)
        self._pending = still

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._check(wait=True)


def _snapshot(obj):
    """A copy of ``obj`` whose tensors are CPU copies and whose containers are new: what the
    training loop changes afterwards (weights, optimizer buffers, history) cannot reach it."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _snapshot(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_snapshot(v) for v in obj)
    return obj


def _background_checkpoints(device: torch.device) -> bool:
    return device.type == "cuda"


def _command(argv: list[str]) -> str:
    return "python -m ml train " + " ".join(shlex.quote(a) for a in argv)


def _record_fit(recipe: dict, argv: list[str], fitted: dict) -> None:
    """The recipe of a fitted run names the epochs it ran, as a command that replays it."""
    # --max-minutes and --resume only pace a session: a replay runs the whole schedule.
    # argparse took abbreviations (--fit 5, --epoch=9) only where they were unambiguous, so a
    # flag that starts one of these names is that flag.
    dropped = ("--fit-minutes", "--epochs", "--max-minutes", "--resume")
    replay, skip = [], False
    for a in argv:
        name, inline = a.split("=", 1)[0], "=" in a
        if skip:
            skip = False
        elif len(name) > 2 and name.startswith("--") and any(d.startswith(name) for d in dropped):
            skip = not inline and not "--resume".startswith(name)
        else:
            replay.append(a)
    recipe["command"] = _command([*replay, "--epochs", str(fitted["epochs"])])
    recipe["fitted"] = dict(fitted, command=_command(argv))
    recipe["train_config"]["epochs"] = fitted["epochs"]


def _lineage(path: str) -> dict:
    """How a checkpoint this run starts from or learns from was made (replayable chain)."""
    src = load_checkpoint(path)
    return {
        "path": str(path),
        "sha256": file_sha256(path),
        "recipe": src.get("recipe"),
        "val": (src.get("metrics") or {}).get("val", {}).get("accuracy"),
    }


def _write_logs(out: Path, history: list[dict]) -> None:
    keys = list(dict.fromkeys(k for row in history for k in row))
    tmp = out / ".metrics.csv.tmp"
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    tmp.replace(out / "metrics.csv")
    tmp = out / ".metrics.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in history))
    tmp.replace(out / "metrics.jsonl")
