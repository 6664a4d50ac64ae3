"""A training run's folder: ``last.pt``, ``best.pt``, ``metrics.csv``/``metrics.jsonl``.

Every epoch appends to the metrics logs, rewrites ``last.pt`` (resumable: it carries the
``train_state``) and, when the score improves, ``best.pt`` (release format: no optimizer
state). All writes are atomic, so a run killed at any moment resumes with ``--resume`` from
its last finished epoch, on the same random numbers.
"""

from __future__ import annotations

import csv
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ml.checkpoint import (
    CheckpointError,
    CheckpointWriter,
    file_sha256,
    load_checkpoint,
    model_config_of,
)
from ml.classes import EMOTIONS
from ml.preprocessing import DEFAULT_PREPROCESSING
from ml.train import SetupError


def rng_state() -> dict:
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


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state`; the RNG setters take CPU ByteTensors only."""
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


@dataclass
class Progress:
    """Where a run stands: the epochs done, the best score so far, one row per epoch, and the
    fitted schedule (see :class:`ml.fit.TimeBudget`) where a resumed run keeps one."""

    epoch: int = 0
    # -inf: without --val the score is -train_loss, often below -1 (best.pt was then never
    # written)
    best_acc: float = -float("inf")
    history: list[dict] = field(default_factory=list)
    fitted: dict | None = None


def resume(last_path: Path, run, *, keep_fit: bool) -> Progress:
    """Load ``last_path`` into the objects of ``run`` (a :class:`ml.cli_train.TrainingRun`);
    ``keep_fit``: also its fitted schedule, which sets ``run.cfg.epochs``."""
    # loaded on the CPU: the RNG states must stay CPU ByteTensors (set_rng_state refuses
    # CUDA ones) and optimizer.load_state_dict moves its state to the parameters' device
    ck = load_checkpoint(last_path, map_location="cpu")
    if model_config_of(ck, last_path) != run.model_config:
        raise SetupError(f"{last_path} was trained with a different model config")
    ts = ck.get("train_state")
    if not isinstance(ts, dict):
        raise CheckpointError(
            f"{last_path} is not a resumable checkpoint: it has no train_state "
            "(a release file such as best.pt?)"
        )
    try:
        run.model.load_state_dict(ck["state_dict"])
        run.optimizer.load_state_dict(ts["optimizer"])
        run.scheduler.load_state_dict(ts["scheduler"])
        run.generator.set_state(ts["generator"].cpu())
        set_rng_state(ts["rng"])
        done = Progress(ck["epoch"], ts["best_acc"], ts["history"])
        if keep_fit and ts.get("fitted"):  # fitted before: keep that schedule
            done.fitted = ts["fitted"]
            run.cfg.epochs = int(done.fitted["epochs"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{last_path}: its train_state does not fit this run: {e}") from None
    print(f"resumed from {last_path} at epoch {done.epoch}", file=sys.stderr)
    return done


def save_epoch(writer: CheckpointWriter, run, row: dict, summary: dict | None) -> None:
    """The checkpoints and logs of the epoch ``row`` of ``run`` (a
    :class:`ml.cli_train.TrainingRun`) in its folder; ``best.pt`` too where its score beats
    the best so far."""
    done, epoch, out = run.progress, row["epoch"], run.out
    base = {
        "model_config": run.model_config.to_dict(),
        "class_names": list(EMOTIONS),
        "preprocessing": DEFAULT_PREPROCESSING.to_dict(),
        "recipe": run.recipe,
        "epoch": epoch,
    }
    score = row.get("val_acc", -row["train_loss"])
    if score > done.best_acc:
        done.best_acc = score
        metrics = {"epoch": epoch, "val": summary} if summary else {"epoch": epoch}
        state_dict = {k: v.cpu() for k, v in run.model.state_dict().items()}
        writer.save(out / "best.pt", {**base, "metrics": metrics, "state_dict": state_dict})
    train_state = {
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "generator": run.generator.get_state(),
        "rng": rng_state(),
        "best_acc": done.best_acc,
        "history": done.history,
        "fitted": run.budget.fitted,
    }
    last = {"metrics": {"last": row}, "state_dict": run.model.state_dict()}
    writer.save(out / "last.pt", {**base, **last, "train_state": train_state})
    write_logs(out, done.history)


def lineage(path: str) -> dict:
    """How a checkpoint this run starts from or learns from was made (replayable chain)."""
    src = load_checkpoint(path)
    return {
        "path": str(path),
        "sha256": file_sha256(path),
        "recipe": src.get("recipe"),
        "val": (src.get("metrics") or {}).get("val", {}).get("accuracy"),
    }


def write_logs(out: Path, history: list[dict]) -> None:
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
