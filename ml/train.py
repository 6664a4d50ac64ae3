"""Training, torchvision-reference style: ``train_one_epoch`` and ``evaluate`` here, ``main`` in
:mod:`ml.cli_train`, the run folder (checkpoints, logs, resume) in :mod:`ml.run_state`, the
time budget (``--fit-minutes``) in :mod:`ml.fit`.

CPU and CUDA run the same code; AMP (bf16 autocast) is used on CUDA only.
"""

from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ml.augment import AugmentConfig, augment_batch
from ml.checkpoint import build_model, load_checkpoint, model_config_of, preprocessing_of
from ml.classes import NUM_CLASSES
from ml.data import FaceDataset
from ml.evaluate import predict_logits, predict_probs
from ml.fit import PaceTimer
from ml.metrics import classification_summary
from ml.model import LogitEnsemble, ModelConfig
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


class SetupError(ValueError):
    """A run cannot start from what it was given (a teacher or --init that does not fit, an
    empty training set); the CLI reports it as one line, exit 2."""


@dataclass
class Distillation:
    """Knowledge distillation (Hinton et al. 2015): the loss becomes ``(1 - alpha)`` × the
    cross-entropy + ``alpha`` × T² × the KL divergence from the teacher's answer softened by
    ``temperature`` T. The answer comes from ``teacher``, run on every augmented view
    (online), or from ``table``: N×2×C teacher logits of each training image as is and
    mirrored, computed once (offline, see :func:`teacher_logit_table`)."""

    temperature: float
    alpha: float
    teacher: torch.nn.Module | None = None
    table: torch.Tensor | None = None

    def table_probs(self, idx: torch.Tensor, flipped: torch.Tensor, device) -> torch.Tensor | None:
        """The table's softened answers for the images ``idx`` as mirrored (``flipped``)."""
        if self.table is None:
            return None
        t_logits = self.table[idx.to(device), flipped.long()]
        return F.softmax(t_logits.float() / self.temperature, 1)

    def loss(self, loss, logits, x, t_probs, amp: bool) -> torch.Tensor:
        """``loss`` blended with the distillation term: against ``t_probs`` (the table's,
        mixed like ``x``), or against the teacher's answer on ``x``, the same view."""
        tau = self.temperature
        if self.teacher is not None:
            with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=amp):
                t_probs = F.softmax(self.teacher(x).float() / tau, 1)
        if t_probs is None:
            return loss
        kd = F.kl_div(F.log_softmax(logits / tau, 1), t_probs, reduction="batchmean")
        return (1 - self.alpha) * loss + self.alpha * kd * tau * tau


@dataclass
class StepContext:
    """What every step of a run uses besides the model and the data.

    ``images``/``labels`` may live on the training device and ``generator`` on it too; then
    no step copies anything from the host. ``sync_every_step=False`` (a GPU) keeps the loss
    and accuracy on the device and reads them back once, at the end of the epoch (and every
    ``PROGRESS_EVERY`` steps for the progress bar), so the host queues the next steps while
    the GPU works; a non-finite loss is then reported at the end of the epoch, naming its
    first step, before anything is saved. The weights are the same either way.
    """

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    weights: torch.Tensor | None  # class weights of the loss
    aug: AugmentConfig
    generator: torch.Generator
    device: torch.device | str
    amp: bool = False
    progress: bool = True
    sync_every_step: bool = True


#: a deferred-sync run (GPU) reads its loss back for the progress bar every this many steps
PROGRESS_EVERY = 25


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


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=True,
            weight_decay=cfg.weight_decay,
        )
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Warm-up then cosine over ``cfg.epochs``, read at every step: ``--fit-minutes`` may lower
    it after the first epoch."""
    warmup = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, steps_per_epoch * cfg.epochs, warmup)
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_teacher(paths: tuple[str, ...], device) -> torch.nn.Module:
    """The frozen teacher of ``paths``: one checkpoint, or the mean logits of several."""
    members = []
    for path in paths:
        tck = load_checkpoint(path)
        if preprocessing_of(tck) != DEFAULT_PREPROCESSING:
            raise SetupError(f"teacher {path} must use the same input preprocessing")
        members.append(build_model(tck))
    teacher = (members[0] if len(members) == 1 else LogitEnsemble(members)).to(device).eval()
    for prm in teacher.parameters():
        prm.requires_grad_(False)
    return teacher


def load_init(model: torch.nn.Module, path: str, config: ModelConfig) -> None:
    """Start ``model`` from the weights of the checkpoint ``path`` (same model config)."""
    ick = load_checkpoint(path)
    if model_config_of(ick, path) != config:  # older files lack new defaults
        raise SetupError(f"--init {path} has a different model config")
    model.load_state_dict(ick["state_dict"])


def train_one_epoch(
    model, images, labels, ctx: StepContext, cfg: TrainConfig, kd: Distillation | None = None
) -> dict:
    """One pass over the training set (``images``/``labels``, see :class:`StepContext`),
    distilling from ``kd`` where given.

    Also returns ``seconds_per_step``: the steady pace, timed over the second half of the
    epoch (after warm-up costs such as cuDNN's algorithm search), for ``--fit-minutes``.
    """
    model.train()
    n = len(labels)
    perm = torch.randperm(n, generator=ctx.generator, device=ctx.generator.device)
    starts = range(0, n - cfg.batch_size + 1 if n >= cfg.batch_size else 1, cfg.batch_size)
    tally, pace = _Tally(ctx.sync_every_step, cfg), PaceTimer(len(starts), ctx.device)
    steps = starts
    if ctx.progress:
        from tqdm import tqdm

        steps = tqdm(starts, desc="train", unit="batch", leave=False, file=sys.stderr)
    for k, start in enumerate(steps):
        pace.step(k)
        batch = (images, labels, perm[start : start + cfg.batch_size])
        _train_step(model, batch, ctx, cfg, kd, tally, k)
        if ctx.progress and (ctx.sync_every_step or k % PROGRESS_EVERY == PROGRESS_EVERY - 1):
            steps.set_postfix(**tally.postfix())
    seconds_per_step = pace.seconds_per_step()
    train_loss, train_acc = tally.result()
    return {"train_loss": train_loss, "train_acc": train_acc, "seconds_per_step": seconds_per_step}


def _train_step(model, batch, ctx: StepContext, cfg: TrainConfig, kd, tally, k: int) -> None:
    """Step ``k``: the batch ``images[idx]``, augmented (and mixed), forward, backward."""
    images, labels, idx = batch
    pre = DEFAULT_PREPROCESSING
    x = images[idx].to(ctx.device, non_blocking=True).float().div_(255).unsqueeze(1)
    y = labels[idx].to(ctx.device, non_blocking=True)
    x, flipped = augment_batch(x, ctx.aug, ctx.generator, return_flip=True)
    x = (x - pre.mean) / pre.std
    t_probs = kd.table_probs(idx, flipped, ctx.device) if kd is not None else None
    x, mix, t_probs = _mixup(x, y, t_probs, cfg.mixup_alpha, ctx)
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=ctx.amp):
        logits = model(x)
    logits = logits.float()
    loss = _cross_entropy(logits, y, mix, ctx.weights, cfg.label_smoothing)
    if kd is not None:  # knowledge distillation on the same view
        loss = kd.loss(loss, logits, x, t_probs, ctx.amp)
    tally.check(loss, k)  # stop before the step spreads a non-finite loss into the weights
    ctx.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    ctx.optimizer.step()
    ctx.scheduler.step()
    tally.add(loss, (logits.argmax(1) == y).sum(), len(idx))


def _mixup(x, y, t_probs, alpha: float, ctx: StepContext):
    """Mixup (Zhang et al. 2018): each view blended with another of the batch by λ ~ Beta(α, α);
    returns the views, ``(λ, the other labels)`` (None without mixup), the teacher's mixed."""
    if alpha <= 0:
        return x, None, t_probs
    lam = float(np.random.beta(alpha, alpha))
    j = torch.randperm(len(x), generator=ctx.generator, device=ctx.generator.device)
    j = j.to(ctx.device)
    x = lam * x + (1 - lam) * x[j]
    if t_probs is not None:
        t_probs = lam * t_probs + (1 - lam) * t_probs[j]
    return x, (lam, y[j]), t_probs


def _cross_entropy(logits, y, mix, weights, smoothing: float) -> torch.Tensor:
    loss = F.cross_entropy(logits, y, weight=weights, label_smoothing=smoothing)
    if mix is not None:
        lam, y2 = mix
        other = F.cross_entropy(logits, y2, weight=weights, label_smoothing=smoothing)
        loss = lam * loss + (1 - lam) * other
    return loss


class _Tally:
    """An epoch's loss and accuracy sums: read back at every step (``sync``), or kept on the
    device and read back once, at :meth:`result` (see :class:`StepContext`)."""

    def __init__(self, sync: bool, cfg: TrainConfig):
        self.sync, self.cfg = sync, cfg
        self.total, self.correct, self.seen = 0.0, 0, 0
        self.losses: list[torch.Tensor] = []
        self._value = 0.0

    def check(self, loss: torch.Tensor, k: int) -> None:
        if self.sync:
            self._value = loss.item()
            if not math.isfinite(self._value):
                raise _diverged(self._value, k, self.cfg)

    def add(self, loss: torch.Tensor, hits: torch.Tensor, n: int) -> None:
        if self.sync:
            self.total += self._value * n
            self.correct += hits.item()
        else:
            self.losses.append(loss.detach() * n)
            self.correct = self.correct + hits  # a device tensor: no wait for the GPU
        self.seen += n

    def postfix(self) -> dict:
        so_far = self.total if self.sync else float(torch.stack(self.losses).sum())
        return {"loss": f"{so_far / self.seen:.3f}", "acc": f"{int(self.correct) / self.seen:.3f}"}

    def result(self) -> tuple[float, float]:
        """(mean loss, accuracy); a deferred run's first non-finite step raised here."""
        if self.losses:  # read back once: the first non-finite step, else the epoch's sums
            sums = torch.stack(self.losses).double().cpu()
            bad = (~torch.isfinite(sums)).nonzero()
            if len(bad):
                k = int(bad[0])
                raise _diverged(float(sums[k]), k, self.cfg)
            self.total = float(sums.sum())
        return self.total / max(self.seen, 1), int(self.correct) / max(self.seen, 1)


def _diverged(loss_value: float, step: int, cfg: TrainConfig) -> TrainingError:
    return TrainingError(
        f"training loss is {loss_value} at step {step + 1}: "
        f"the run diverged (lower --lr, now {cfg.lr:g})"
    )


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
