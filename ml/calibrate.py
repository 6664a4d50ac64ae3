"""Temperature scaling (Guo et al. 2017) fitted on a labelled set (``python -m ml calibrate``).

One scalar T divides the logits; it is chosen to minimise the negative log-likelihood on the
given set (use the validation split, never test data). Accuracy is unchanged (argmax is
invariant to T); calibration (ECE, NLL) usually improves. The temperature is written into
the checkpoint under ``calibration`` and every Predictor applies it.

T is searched in [0.05, 20] and stays 1 unless the NLL improves. A set of fewer than
``--min-samples`` (200) images, or one on which T ends on a bound (degenerate logits: all
right by huge margins pushes T to 0, all wrong to infinity), is refused: nothing is written.
"""

from __future__ import annotations

import numpy as np
import torch

T_BOUNDS = (0.05, 20.0)
MIN_SAMPLES = 200


class CalibrationError(ValueError):
    """The set cannot support a temperature: too few images, or degenerate logits."""


def _nll(z: torch.Tensor, y: torch.Tensor, t: float) -> float:
    return float(torch.nn.functional.cross_entropy(z / t, y))


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, bounds=T_BOUNDS, steps: int = 80
) -> float:
    """T in ``bounds`` minimising mean cross-entropy of softmax(logits / T); 1 unless better.

    The NLL is convex in 1/T, hence unimodal in log T: a golden-section search over log T
    finds its minimum, or the bound the logits push it to.
    """
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    a, b = np.log(bounds[0]), np.log(bounds[1])
    g = (np.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = _nll(z, y, np.exp(c)), _nll(z, y, np.exp(d))
    for _ in range(steps):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = _nll(z, y, np.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = _nll(z, y, np.exp(d))
    t = float(np.exp((a + b) / 2))
    return t if _nll(z, y, t) < _nll(z, y, 1.0) - 1e-9 else 1.0  # not for rounding noise


def checked_temperature(
    logits: np.ndarray, labels: np.ndarray, min_samples: int = MIN_SAMPLES
) -> float:
    """:func:`fit_temperature`, refused (CalibrationError) on too small a set or at a bound."""
    n = len(labels)
    if n < min_samples:
        raise CalibrationError(
            f"{n} labelled images are too few to fit a temperature (at least {min_samples}: "
            "use the validation split; --min-samples)"
        )
    t = fit_temperature(logits, labels)
    lo, hi = T_BOUNDS
    if not lo * 1.001 < t < hi / 1.001:
        raise CalibrationError(
            f"the fitted temperature ran into its bound ({t:.3g}, allowed {lo:g}..{hi:g}): the "
            "logits are degenerate on this set (all right by huge margins, or all wrong)"
        )
    return t


def softmax(z: np.ndarray, t: float) -> np.ndarray:
    e = np.exp((z - z.max(axis=1, keepdims=True)) / t)
    return e / e.sum(axis=1, keepdims=True)
