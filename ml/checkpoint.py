"""Checkpoint format: weights + everything needed to use them, written atomically.

A checkpoint is a dict saved with ``torch.save`` and loaded with ``weights_only=True`` (no
pickled code runs on load). Keys:

``format`` ("affect-ml-checkpoint"), ``format_version``, ``model_config``, ``class_names``,
``preprocessing``, ``recipe`` (command + hyper-parameters), ``metrics`` (validation),
``state_dict``, ``epoch``; training checkpoints (``last.pt``) also carry ``train_state``
(optimizer, scheduler, RNG, best metric) for ``--resume``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from ml.classes import EMOTIONS
from ml.model import ModelConfig, create_model
from ml.preprocessing import Preprocessing

FORMAT = "affect-ml-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = (
    "format",
    "format_version",
    "model_config",
    "class_names",
    "preprocessing",
    "state_dict",
)


# TorchVersion is a plain str subclass some recipes recorded; nothing else is allowed. Added
# once for the process: the ``safe_globals`` context manager swaps a process-wide list, so
# threads loading at the same time (a web process's first requests) undid each other's.
torch.serialization.add_safe_globals([torch.torch_version.TorchVersion])


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or does not match this code."""


def save_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` to ``path`` atomically (temp file in the same folder + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise CheckpointError(
            f"corrupt or unreadable checkpoint {path}: not a complete torch.save archive"
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        # torch's own message runs to several lines of advice about weights_only: its first
        # line says what is wrong
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
        why = f"{type(e).__name__}: {first}" if first else type(e).__name__
        raise CheckpointError(f"corrupt or unreadable checkpoint {path}: {why}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an {FORMAT} file")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format version {ckpt['format_version']}, this code reads {FORMAT_VERSION}"
        )
    if tuple(ckpt["class_names"]) != EMOTIONS:
        raise CheckpointError(
            f"{path}: class names {ckpt['class_names']} differ from {list(EMOTIONS)}"
        )
    return ckpt


def model_config_of(ckpt: dict, path: str | os.PathLike = "checkpoint") -> ModelConfig:
    """The checkpoint's :class:`ModelConfig`; CheckpointError if this code cannot read it."""
    try:
        return ModelConfig.from_dict(ckpt["model_config"])
    except (TypeError, KeyError, ValueError) as e:  # an unknown or missing field
        raise CheckpointError(f"{path}: model config not readable by this code: {e}") from None


def build_model(ckpt: dict) -> torch.nn.Module:
    """Instantiate the checkpoint's model in eval mode; CheckpointError if weights don't fit."""
    try:
        config = ModelConfig.from_dict(ckpt["model_config"])
        model = create_model(config)
        model.load_state_dict(ckpt["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"checkpoint weights do not match its model config: {e}") from None
    return model.eval()


def half_precision(state_dict: dict) -> dict:
    """``state_dict`` with its floating-point tensors stored as float16 (integers, such as
    batch norm's counters, kept): half the file. ``build_model`` and ``load_state_dict`` cast
    them back into the model's float32 parameters, so every reader loads such a file as is."""
    return {k: v.half() if v.is_floating_point() else v for k, v in state_dict.items()}


def preprocessing_of(ckpt: dict) -> Preprocessing:
    return Preprocessing.from_dict(ckpt["preprocessing"])


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
