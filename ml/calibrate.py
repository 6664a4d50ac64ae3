"""``python -m ml calibrate``: temperature scaling (Guo et al. 2017) fitted on a labelled set.

One scalar T divides the logits; it is chosen to minimise the negative log-likelihood on the
given set (use the validation split, never test data). Accuracy is unchanged (argmax is
invariant to T); calibration (ECE, NLL) usually improves. The temperature is written into
the checkpoint under ``calibration`` and every Predictor applies it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ml.checkpoint import build_model, load_checkpoint, preprocessing_of, save_checkpoint
from ml.data import load_dataset
from ml.evaluate import predict_logits
from ml.metrics import classification_summary
from ml.predictor import default_weights


def fit_temperature(logits: np.ndarray, labels: np.ndarray, steps: int = 200) -> float:
    """T > 0 minimising mean cross-entropy of softmax(logits / T)."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.exp().item())


def _softmax(z: np.ndarray, t: float) -> np.ndarray:
    e = np.exp((z - z.max(axis=1, keepdims=True)) / t)
    return e / e.sum(axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ml calibrate", description=__doc__.split("\n")[0])
    p.add_argument("data", help="labelled set to fit on (the validation split)")
    p.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    p.add_argument("--out", help="write the calibrated checkpoint here (default: in place)")
    args = p.parse_args(argv)
    weights = Path(args.weights) if args.weights else default_weights()
    ckpt = load_checkpoint(weights)
    model = build_model(ckpt)
    ds = load_dataset(args.data)
    logits = predict_logits(model, ds.images, pre=preprocessing_of(ckpt))
    t = fit_temperature(logits, ds.labels)
    before = classification_summary(_softmax(logits, 1.0), ds.labels)
    after = classification_summary(_softmax(logits, t), ds.labels)
    ckpt["calibration"] = {
        "temperature": t,
        "fitted_on": str(args.data),
        "n": len(ds),
        "ece_before": before["ece"],
        "ece_after": after["ece"],
        "nll_before": before["nll"],
        "nll_after": after["nll"],
    }
    out = Path(args.out) if args.out else weights
    save_checkpoint(out, ckpt)
    print(f"temperature {t:.4f} fitted on {len(ds)} images of {args.data}")
    print(
        f"ECE {before['ece']:.4f} → {after['ece']:.4f}   NLL {before['nll']:.4f} → {after['nll']:.4f}"
        f"   accuracy {after['accuracy']:.4f} (unchanged)"
    )
    print(f"wrote {out}", file=sys.stderr)
    return 0
