"""Evaluation: probabilities for a dataset with the shared eval preset, metrics and plots."""

from __future__ import annotations

import numpy as np
import torch

from ml.classes import EMOTIONS
from ml.metrics import classification_summary
from ml.preprocessing import (
    DEFAULT_PREPROCESSING,
    Preprocessing,
    crops_to_tensor,
    resize_crop,
    to_gray,
)


@torch.no_grad()
def predict_probs(
    model: torch.nn.Module,
    images: np.ndarray | torch.Tensor,
    *,
    pre: Preprocessing = DEFAULT_PREPROCESSING,
    tta: bool = False,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    temperature: float = 1.0,
    progress: bool = False,
) -> np.ndarray:
    """Softmax probabilities (N×7) for uint8 crops; ``tta`` averages with the mirrored face."""
    model.eval()
    if isinstance(images, list | tuple):
        images = np.stack([resize_crop(to_gray(np.asarray(c)), pre.input_size) for c in images])
    images = torch.as_tensor(images)
    out = []
    rng = range(0, len(images), batch_size)
    if progress:
        from tqdm import tqdm

        rng = tqdm(rng, desc="evaluating", unit="batch", leave=False)
    for i in rng:
        x = crops_to_tensor(images[i : i + batch_size], pre).to(device)
        logits = model(x).float()
        p = torch.softmax(logits / temperature, dim=1)
        if tta:
            p = (p + torch.softmax(model(torch.flip(x, dims=[3])).float() / temperature, 1)) / 2
        out.append(p.cpu())
    if not out:
        return np.zeros((0, len(EMOTIONS)), dtype=np.float32)
    return torch.cat(out).numpy()


@torch.no_grad()
def predict_logits(
    model,
    images,
    *,
    pre: Preprocessing = DEFAULT_PREPROCESSING,
    batch_size: int = 256,
    device="cpu",
) -> np.ndarray:
    """Raw logits (N×7) for uint8 crops, single view (used to fit a temperature)."""
    model.eval()
    images = torch.as_tensor(np.asarray(images))
    out = [
        model(crops_to_tensor(images[i : i + batch_size], pre).to(device)).float().cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out).numpy() if out else np.zeros((0, len(EMOTIONS)), np.float32)


def evaluate_arrays(model, images, labels, **kwargs) -> dict:
    probs = predict_probs(model, images, **kwargs)
    return classification_summary(probs, labels)


def plot_confusion_matrix(summary: dict, path: str, title: str = "Confusion matrix") -> None:
    """Row-normalised confusion matrix with counts, rows = true class; written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(summary["confusion_matrix"], dtype=np.float64)
    names = summary["classes"]
    present = [i for i, n in enumerate(names) if n in summary["classes_present"]]
    rows = cm[present]
    norm = rows / np.maximum(rows.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7.5, 6.5 * len(present) / len(names) + 1))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(present)), [names[i] for i in present])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for r, i in enumerate(present):
        for j in range(len(names)):
            color = "white" if norm[r, j] > 0.5 else "black"
            ax.text(
                j,
                r,
                f"{norm[r, j]:.2f}\n{int(cm[i, j])}",
                ha="center",
                va="center",
                fontsize=7,
                color=color,
            )
    ax.set_title(
        f"{title}\naccuracy {summary['accuracy']:.3f} · macro-F1 {summary['macro_f1']:.3f} · n={summary['n']}"
    )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_summary(summary: dict) -> str:
    lines = [
        f"n={summary['n']}  accuracy={summary['accuracy']:.4f}  macro_f1={summary['macro_f1']:.4f}  "
        f"ece={summary['ece']:.4f}  nll={summary['nll']:.4f}",
        f"{'class':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}",
    ]
    for name, r in summary["per_class"].items():
        lines.append(
            f"{name:<10}{r['precision']:>10.3f}{r['recall']:>10.3f}{r['f1']:>10.3f}{r['support']:>10d}"
        )
    return "\n".join(lines)
