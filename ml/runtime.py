"""Inference-time graph optimisation shared by the predictor and the benchmark.

On CPU the trained network is folded and laid out for speed: every conv followed by a
BatchNorm becomes one conv with the BatchNorm folded into its weights and bias (``torch.fx``
conv-BN fusion), and weights use the channels-last layout that oneDNN's convolutions run
fastest on. Outputs match the unfused model to float rounding (checked in the tests); the
checkpoint itself is untouched, so training, export and evaluation see the original modules.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


def optimize_for_inference(model: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """An eval-mode copy of ``model`` for fast inference on ``device`` (CPU: fused, NHWC)."""
    model = model.eval()
    if torch.device(device).type != "cpu":
        return model
    try:
        from torch.fx.experimental.optimization import fuse

        fast = fuse(model)
    except Exception as exc:  # an untraceable module: run it as is, only slower
        log.warning("conv-BN fusion skipped for %s: %s", type(model).__name__, exc)
        fast = model
    return fast.to(memory_format=torch.channels_last).eval()
