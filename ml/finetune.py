"""Fine-tuning a checkpoint on reviewed face crops (``python -m ml finetune``; no Django here).

The caller hands over the reviewed crops, their labels and one group id per crop (the
learner): :func:`split_by_group` holds back whole learners for testing, so no learner's face
is both trained on and scored. :func:`finetune` then trains a copy of the parent with the
project's training step (:func:`ml.train.train_one_epoch`, the same augmentation), mixing in
FER2013 training images every epoch (``replay``) so that the model does not forget what it
knew, and evaluates parent and child on the same data: the FER2013 validation split and the
held-back reviewed crops. The result is a checkpoint payload for
:func:`ml.checkpoint.save_checkpoint`.

Decisions:

* **Calibration**: the temperature is refitted on the FER2013 validation split, as the parent's
  was (``python -m ml calibrate``), never on the reviewed training crops: the child has just
  been fitted to those, so they would make it look sure of itself and push T too low. Without
  the FER2013 split, or where it cannot support a fit (fewer than 200 faces), the parent's
  temperature is kept and the recipe says so. A temperature does not change accuracy or
  macro-F1, so the promotion figures are not touched by this choice.
* **Abstention**: recomputed with ``ml.selective.choose_threshold`` on the child's calibrated
  FER2013 validation probabilities; where that cannot run, the parent's is kept and marked
  ``"recomputed": False``.
* The parent's ``int8`` network is dropped: it was made from the parent's weights
  (``python -m ml quantize`` adds the child's own).
* The recipe records class counts and the number of learners, never learner ids.
* Both models are scored in float32 with their own temperature.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ml.augment import AugmentConfig
from ml.calibrate import CalibrationError, checked_temperature, softmax
from ml.checkpoint import build_model, preprocessing_of
from ml.classes import CLASS_INDEX, EMOTIONS, NUM_CLASSES
from ml.data import FaceDataset, load_image_folder
from ml.evaluate import predict_logits
from ml.metrics import classification_summary
from ml.predictor import resolve_device
from ml.selective import choose_threshold
from ml.train import (
    StepContext,
    TrainConfig,
    class_weights,
    make_optimizer,
    make_scheduler,
    seed_everything,
    train_one_epoch,
)

FREEZE_CHOICES = ("none", "features")
#: what each metrics entry keeps of :func:`ml.metrics.classification_summary`
SUMMARY_KEYS = ("n", "accuracy", "macro_f1", "ece", "nll", "classes_present", "per_class")


class FinetuneError(ValueError):
    """The reviewed set or the configuration cannot make a fine-tune; one-line reason."""


@dataclass
class FinetuneConfig:
    epochs: int = 3
    lr: float = 3e-5  # AdamW, cosine decay to zero over the run
    batch_size: int = 64
    weight_decay: float = 1e-4
    freeze: str = "none"  # "features": train only the classifier head
    replay: int = 500  # FER2013 train images mixed into each epoch; 0 = none
    replay_dir: str | None = None  # FER2013 train folder; None = no replay
    test_fraction: float = 0.3  # share of learners held back for testing
    seed: int = 0
    device: str = "auto"
    label_smoothing: float = 0.1
    class_weight_power: float = 0.5

    def check(self) -> None:
        """FinetuneError naming the first field whose value cannot make a run."""
        rules = [
            ("epochs", self.epochs >= 1, "≥ 1"),
            ("lr", np.isfinite(self.lr) and self.lr > 0, "> 0"),
            ("batch_size", self.batch_size >= 1, "≥ 1"),
            ("weight_decay", self.weight_decay >= 0, "≥ 0"),
            ("freeze", self.freeze in FREEZE_CHOICES, f"one of {FREEZE_CHOICES}"),
            ("replay", self.replay >= 0, "≥ 0"),
            ("test_fraction", 0 < self.test_fraction < 1, "in (0, 1)"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
        ]
        for name, ok, want in rules:
            if not ok:
                raise FinetuneError(f"{name} must be {want}, not {getattr(self, name)!r}")


@dataclass
class FinetuneResult:
    checkpoint: dict  # ready for ml.checkpoint.save_checkpoint
    metrics: dict  # = checkpoint["metrics"]
    history: list[dict] = field(default_factory=list)  # one row per epoch
    seconds: dict = field(default_factory=dict)  # "train", "evaluate"


def split_by_group(
    groups, test_fraction: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) with whole groups on one side: no group is on both.

    ``round(test_fraction × groups)`` groups are held back, at least one and at most all but
    one, chosen by ``seed``.
    """
    groups = np.asarray([str(g) for g in groups])
    unique = np.unique(groups)
    if len(unique) < 2:
        raise FinetuneError(
            f"need reviewed crops from at least 2 learners (got {len(unique)}): "
            "one to train on and one to test on"
        )
    n_test = min(len(unique) - 1, max(1, round(test_fraction * len(unique))))
    held = np.random.default_rng(seed).permutation(unique)[:n_test]
    in_test = np.isin(groups, held)
    return np.flatnonzero(~in_test), np.flatnonzero(in_test)


def label_indices(labels) -> np.ndarray:
    """Class indices of ``labels`` (names of :data:`ml.classes.EMOTIONS` or indices 0..6)."""
    arr = np.asarray(labels)
    if arr.dtype.kind in "USO":  # names
        unknown = sorted({str(x) for x in arr.tolist()} - set(CLASS_INDEX))
        if unknown:
            raise FinetuneError(f"unknown label(s) {unknown[:5]}: expected {list(EMOTIONS)}")
        return np.array([CLASS_INDEX[str(x)] for x in arr.tolist()], dtype=np.int64)
    if arr.dtype.kind not in "iu" or (
        arr.size and not (arr.min() >= 0 and arr.max() < NUM_CLASSES)
    ):
        raise FinetuneError(f"labels must be emotion names or indices 0..{NUM_CLASSES - 1}")
    return arr.astype(np.int64)


def check_reviewed(crops: np.ndarray, labels, groups) -> np.ndarray:
    """The label indices, after checking the three arrays fit together (FinetuneError)."""
    crops = np.asarray(crops)
    if crops.ndim != 3 or crops.shape[1:] != (48, 48) or crops.dtype != np.uint8:
        raise FinetuneError(
            f"crops must be an N×48×48 uint8 array, not {crops.dtype} {tuple(crops.shape)}"
        )
    y = label_indices(labels)
    if not len(crops) == len(y) == len(groups):
        raise FinetuneError(
            f"{len(crops)} crops, {len(y)} labels and {len(groups)} groups: lengths differ"
        )
    return y


def load_fer_val(path, limit: int | None, seed: int = 0, progress: bool = False) -> dict:
    """The FER2013 validation images (a fixed-seed subset of ``limit`` where smaller)."""
    ds = load_image_folder(path, progress=progress)
    full = not limit or limit >= len(ds)
    keep = slice(None)
    if not full:
        keep = np.sort(np.random.default_rng(seed).permutation(len(ds))[:limit])
    return {"images": ds.images[keep], "labels": ds.labels[keep], "full_split": full}


def finetune(
    parent_ckpt: dict,
    crops: np.ndarray,
    labels,
    groups,
    config: FinetuneConfig | None = None,
    *,
    parent_sha256: str | None = None,
    fer_val_dir: str | Path | None = None,
    fer_val_limit: int | None = None,
    progress: bool = False,
) -> FinetuneResult:
    """Fine-tune ``parent_ckpt`` on reviewed ``crops`` (N×48×48 uint8) labelled ``labels``
    (emotion names or indices), one learner id per crop in ``groups``; see the module doc.

    ``parent_sha256`` (or ``parent_ckpt["sha256"]``) names the parent in the recipe.
    FinetuneError for input that cannot make a run (shapes, labels, fewer than 2 learners).
    """
    config = config or FinetuneConfig()
    config.check()
    sha = parent_sha256 or parent_ckpt.get("sha256")
    if not sha:
        raise FinetuneError("parent sha256 unknown: pass parent_sha256 (file_sha256 of its file)")
    crops, groups = np.asarray(crops), list(groups)
    y = check_reviewed(crops, labels, groups)
    train_idx, test_idx = split_by_group(groups, config.test_fraction, config.seed)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    fer = load_fer_val(fer_val_dir, fer_val_limit, config.seed, progress) if fer_val_dir else None
    replay = load_image_folder(config.replay_dir, progress=progress) if config.replay_dir else None
    model = build_model(parent_ckpt).to(device)
    pre = preprocessing_of(parent_ckpt)
    test = crops[test_idx], y[test_idx]
    t0, c0 = time.monotonic(), time.process_time()
    parent_eval = _score(_logits(model, fer, test[0], pre, device), parent_ckpt, fer, test[1])
    t1, c1 = time.monotonic(), time.process_time()
    history = _train(model, crops[train_idx], y[train_idx], replay, config, device, progress)
    t2, c2 = time.monotonic(), time.process_time()
    logits = _logits(model, fer, test[0], pre, device)
    calibration = _calibration(logits["fer"], parent_ckpt, fer)
    child_eval = _score(logits, {"calibration": calibration}, fer, test[1])
    t3 = time.monotonic()
    metrics = _metrics(parent_eval, child_eval, fer, fer_val_dir, groups, test_idx)
    recipe = _recipe(parent_ckpt, sha, config, y, train_idx, test_idx, groups, device)
    payload = _payload(parent_ckpt, model, recipe, metrics, calibration)
    abstention = _abstention(parent_ckpt, child_eval.get("fer_probs"), fer)
    if abstention is not None:
        payload["abstention"] = abstention
    seconds = {"train": round(t2 - t1, 3), "evaluate": round(t1 - t0 + t3 - t2, 3)}
    # CPU seconds of all threads: what a run costs whatever else the machine is doing
    seconds.update(train_cpu=round(c2 - c1, 3), parent_evaluate_cpu=round(c1 - c0, 3))
    return FinetuneResult(payload, metrics, history, seconds)


def _payload(parent_ckpt: dict, model, recipe: dict, metrics: dict, calibration: dict) -> dict:
    """The child's checkpoint: the parent's model config, classes and preprocessing, its own
    weights, recipe, metrics and temperature; no ``int8`` (that was the parent's network)."""
    return {
        "model_config": parent_ckpt["model_config"],
        "class_names": list(parent_ckpt["class_names"]),
        "preprocessing": parent_ckpt["preprocessing"],
        "recipe": recipe,
        "metrics": metrics,
        "epoch": recipe["finetune_config"]["epochs"],
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "calibration": calibration,
    }


def _logits(model, fer: dict | None, crops, pre, device) -> dict:
    """``model``'s logits on the FER2013 images (None without them) and the test crops."""
    fer_logits = None
    if fer is not None:
        fer_logits = predict_logits(model, fer["images"], pre=pre, device=device)
    return {"fer": fer_logits, "test": predict_logits(model, crops, pre=pre, device=device)}


def _score(logits: dict, ckpt: dict, fer: dict | None, test_labels) -> dict:
    """Summaries of ``logits`` with ``ckpt``'s temperature; ``fer_probs`` for abstention."""
    t = float((ckpt.get("calibration") or {}).get("temperature", 1.0))
    out = {"reviewed_test": _summary(softmax(logits["test"], t), test_labels)}
    if fer is not None:
        out["fer_probs"] = softmax(logits["fer"], t)
        out["fer2013_val"] = _summary(out["fer_probs"], fer["labels"])
    return out


def _summary(probs: np.ndarray, labels: np.ndarray) -> dict:
    s = classification_summary(probs, labels)
    return {k: s[k] for k in SUMMARY_KEYS}


def _calibration(logits: np.ndarray | None, parent_ckpt: dict, fer: dict | None) -> dict:
    """The child's temperature: refitted on its FER2013 validation ``logits``, else the
    parent's (see the module doc)."""
    kept = dict(parent_ckpt.get("calibration") or {"temperature": 1.0})
    if fer is None:
        return {**kept, "refitted": False, "why": "no FER2013 validation split given"}
    try:
        t = checked_temperature(logits, fer["labels"])
    except CalibrationError as e:
        return {**kept, "refitted": False, "why": str(e)}
    before = classification_summary(softmax(logits, 1.0), fer["labels"])
    after = classification_summary(softmax(logits, t), fer["labels"])
    return {
        "temperature": t,
        "fitted_on": "fer2013 validation" + ("" if fer["full_split"] else " (subset)"),
        "n": len(fer["labels"]),
        "ece_before": before["ece"],
        "ece_after": after["ece"],
        "nll_before": before["nll"],
        "nll_after": after["nll"],
        "refitted": True,
    }


def _metrics(parent: dict, child: dict, fer, fer_val_dir, groups, test_idx) -> dict:
    """Parent and child side by side on identical data, for a promotion rule to compare."""
    metrics = {
        "reviewed_test": {
            "parent": parent["reviewed_test"],
            "child": child["reviewed_test"],
            "n": len(test_idx),
            "learners": len({str(groups[i]) for i in test_idx}),
        },
        "fer2013_val": None,
    }
    if fer is not None:
        metrics["fer2013_val"] = {
            "parent": parent["fer2013_val"],
            "child": child["fer2013_val"],
            "n": len(fer["labels"]),
            "full_split": fer["full_split"],
            "path": str(fer_val_dir),
        }
        metrics["val"] = child["fer2013_val"]  # where every checkpoint keeps its val figures
    return metrics


def _recipe(parent_ckpt, sha, cfg: FinetuneConfig, y, train_idx, test_idx, groups, device):
    """How the child was made; counts only: no learner id leaves this function."""

    def counts(idx) -> dict:
        c = np.bincount(y[idx], minlength=NUM_CLASSES)
        return {EMOTIONS[i]: int(c[i]) for i in range(NUM_CLASSES)}

    parent_val = (parent_ckpt.get("metrics") or {}).get("val") or {}
    return {
        "command": "finetune",
        "finetune_config": asdict(cfg),
        "augment": AugmentConfig().to_dict(),
        "parent": {
            "sha256": sha,
            "recipe": parent_ckpt.get("recipe"),
            "val": parent_val.get("accuracy"),
        },
        "counts": {"train": counts(train_idx), "test": counts(test_idx)},
        "learners": {
            "train": len({str(groups[i]) for i in train_idx}),
            "test": len({str(groups[i]) for i in test_idx}),
        },
        "n_train": len(train_idx),
        "n_test": len(test_idx),
        "device": device.type,
        "torch": str(torch.__version__),
    }


def _abstention(parent_ckpt: dict, probs: np.ndarray | None, fer: dict | None) -> dict | None:
    """The child's default abstention threshold, chosen on its FER2013 validation
    probabilities; the parent's, marked not recomputed, where that cannot be done."""
    if probs is not None:
        return {**choose_threshold(probs, fer["labels"]), "recomputed": True}
    if "abstention" in parent_ckpt:
        return {**parent_ckpt["abstention"], "recomputed": False}
    return None


class _FrozenFeatures(torch.nn.Module):
    """``model`` with every parameter but its ``head`` frozen; ``train()`` keeps the frozen
    layers in eval mode, so their batch-norm statistics stay the parent's."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        for name, prm in model.named_parameters():
            prm.requires_grad_(name.startswith("head."))

    def train(self, mode: bool = True):
        super().train(mode)
        for child in self.model.children():
            params = list(child.parameters())
            if params and not any(p.requires_grad for p in params):
                child.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _train(model, images, labels, replay, cfg: FinetuneConfig, device, progress: bool):
    """``cfg.epochs`` epochs of :func:`ml.train.train_one_epoch` on the reviewed crops plus a
    fresh sample of ``replay`` (a :class:`FaceDataset` or None) each epoch; the epoch rows."""
    trainee = _FrozenFeatures(model) if cfg.freeze == "features" else model
    tcfg = _train_config(model, cfg)
    rng = np.random.default_rng(cfg.seed)
    n_replay = min(cfg.replay, len(replay)) if replay is not None else 0
    epoch_sets = [_epoch_set(images, labels, replay, n_replay, rng) for _ in range(cfg.epochs)]
    optimizer = make_optimizer(trainee, tcfg)  # frozen weights get no gradient: AdamW skips them
    steps_per_epoch = max(1, len(epoch_sets[0][1]) // cfg.batch_size)
    ctx = StepContext(
        optimizer,
        make_scheduler(optimizer, tcfg, steps_per_epoch),
        weights=class_weights(epoch_sets[0][1].numpy(), cfg.class_weight_power).to(device),
        aug=AugmentConfig(),
        generator=torch.Generator().manual_seed(cfg.seed),
        device=device,
        progress=progress,
    )
    history = []
    for epoch, (x, y) in enumerate(epoch_sets):
        t0 = time.monotonic()
        row = {"epoch": epoch + 1, "n": len(y)}
        row.update(train_one_epoch(trainee, x, y, ctx, tcfg))
        row["seconds"] = round(time.monotonic() - t0, 3)
        history.append(row)
    model.eval()
    return history


def _train_config(model, cfg: FinetuneConfig) -> TrainConfig:
    """The :class:`TrainConfig` the shared training step reads (AdamW, no warm-up)."""
    return TrainConfig(
        size=model.config.name,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        optimizer="adamw",
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_epochs=0,
        label_smoothing=cfg.label_smoothing,
        class_weight_power=cfg.class_weight_power,
        seed=cfg.seed,
    )


def _epoch_set(images, labels, replay: FaceDataset | None, n_replay: int, rng):
    """One epoch's training tensors: the reviewed crops and ``n_replay`` replay images."""
    if not n_replay:
        return torch.from_numpy(images), torch.from_numpy(labels)
    pick = rng.choice(len(replay), n_replay, replace=False)
    x = np.concatenate([images, replay.images[pick]])
    y = np.concatenate([labels, replay.labels[pick]])
    return torch.from_numpy(x), torch.from_numpy(y)
