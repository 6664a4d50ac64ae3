"""``python -m ml finetune --weights PARENT.pt --data REVIEWED.npz --out CHILD.pt``.

The reviewed set is an ``.npz`` holding ``crops`` (N×48×48 uint8), ``labels`` (emotion
names) and ``groups`` (one learner id per crop). The fine-tune itself: :mod:`ml.finetune`;
this module is its command line. It prints parent and child side by side on the FER2013
validation split and on the held-back learners' crops, and writes the child atomically.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import zipfile
from pathlib import Path

import numpy as np

from ml.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from ml.finetune import FREEZE_CHOICES, FinetuneConfig, FinetuneError, finetune


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ml finetune", description=__doc__.split("\n")[0])
    p.add_argument("--weights", required=True, help="the parent checkpoint")
    p.add_argument("--data", required=True, help=".npz with crops, labels, groups")
    p.add_argument("--out", required=True, help="where to write the child checkpoint")
    p.add_argument("--fer-val", help="FER2013 validation folder, both models are scored on it")
    p.add_argument(
        "--fer-val-limit", type=int, default=0, help="score on a fixed-seed subset (0 = all)"
    )
    d = FinetuneConfig()
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--lr", type=float, default=d.lr, help="AdamW peak learning rate")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--freeze", choices=FREEZE_CHOICES, default=d.freeze)
    p.add_argument(
        "--replay", type=int, default=d.replay, help="FER2013 train images mixed into each epoch"
    )
    p.add_argument("--replay-dir", help="FER2013 train folder (no replay without it)")
    p.add_argument("--test-fraction", type=float, default=d.test_fraction)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda")
    p.add_argument("--no-progress", action="store_true")
    return p


def load_reviewed(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``crops``, ``labels``, ``groups`` of a reviewed-set ``.npz`` (FinetuneError if not)."""
    if not Path(path).is_file():
        raise FinetuneError(f"reviewed set not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("crops", "labels", "groups") if k not in z.files]
            if missing:
                raise FinetuneError(f"{path}: lacks array(s) {missing}")
            return z["crops"], z["labels"], z["groups"]
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        if isinstance(e, FinetuneError):
            raise
        raise FinetuneError(f"{path}: not a readable .npz ({type(e).__name__}: {e})") from None


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    return FinetuneConfig(
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        weight_decay=args.weight_decay,
        freeze=args.freeze,
        replay=args.replay if args.replay_dir else 0,
        replay_dir=args.replay_dir,
        test_fraction=args.test_fraction,
        seed=args.seed,
        device=args.device,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if args.fer_val_limit < 0:
            raise FinetuneError(f"--fer-val-limit must be ≥ 0, not {args.fer_val_limit}")
        crops, labels, groups = load_reviewed(args.data)
        parent = load_checkpoint(args.weights)
        result = finetune(
            parent,
            crops,
            labels,
            groups,
            config_from_args(args),
            parent_sha256=file_sha256(args.weights),
            fer_val_dir=args.fer_val,
            fer_val_limit=args.fer_val_limit or None,
            progress=not args.no_progress,
        )
    except (FinetuneError, ValueError) as e:  # ValueError: a device that is not there
        print(f"error: {e}", file=sys.stderr)
        return 2
    result.checkpoint["recipe"]["argv"] = "python -m ml finetune " + shlex.join(argv)
    save_checkpoint(args.out, result.checkpoint)
    print(format_comparison(result.metrics))
    print(
        f"train {result.seconds['train']:.1f} s ({result.seconds['train_cpu']:.1f} CPU s), "
        f"evaluate {result.seconds['evaluate']:.1f} s; wrote {args.out}",
        file=sys.stderr,
    )
    return 0


def format_comparison(metrics: dict) -> str:
    """Parent and child, accuracy and macro-F1, on each evaluation set."""
    lines = [f"{'set':<22}{'n':>6}{'model':>8}{'accuracy':>10}{'macro_f1':>10}"]
    for key, name in (
        ("fer2013_val", "FER2013 validation"),
        ("reviewed_test", "reviewed held-out"),
    ):
        m = metrics.get(key)
        if not m:
            lines.append(f"{name:<22}{'-':>6}  (not evaluated)")
            continue
        if key == "fer2013_val" and not m["full_split"]:
            name += " *"
        for who in ("parent", "child"):
            s = m[who]
            lines.append(
                f"{name:<22}{s['n']:>6}{who:>8}{s['accuracy']:>10.4f}{s['macro_f1']:>10.4f}"
            )
    if (metrics.get("fer2013_val") or {}).get("full_split") is False:
        lines.append("* a fixed-seed subset (--fer-val-limit), not the whole split")
    return "\n".join(lines)
