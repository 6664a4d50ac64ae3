"""Inference-time graph optimisation shared by the predictor and the benchmark.

On CPU the trained network is folded and laid out for speed: every conv followed by a
BatchNorm becomes one conv with the BatchNorm folded into its weights and bias (``torch.fx``
conv-BN fusion), and weights use the channels-last layout that oneDNN's convolutions run
fastest on. Outputs match the unfused model to float rounding (checked in the tests); the
checkpoint itself is untouched, so training, export and evaluation see the original modules.

A checkpoint that carries an ``int8`` section (``python -m ml quantize``) runs its int8
network on CPU instead, through ONNX Runtime (:func:`runtime_for_checkpoint`).
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


PRECISIONS = ("auto", "fp32", "int8")


def runtime_for_checkpoint(
    model: nn.Module, ckpt: dict, device: torch.device | str = "cpu", precision: str = "auto"
) -> tuple[nn.Module, str]:
    """The network to run for a checkpoint and its precision ("fp32" or "int8").

    ``auto``: the checkpoint's int8 network on CPU when it has one that fits its weights and
    this machine can run it, else the fused fp32 network. ``int8`` insists (``Int8Unavailable``
    otherwise); ``fp32`` never quantises.
    """
    from ml.quantize import Int8Unavailable, load_int8

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    on_cpu = torch.device(device).type == "cpu"
    section = ckpt.get("int8")
    if precision == "int8":
        if not on_cpu:
            raise Int8Unavailable(f"the int8 network runs on CPU only, not {device}")
        if not section:
            raise Int8Unavailable("checkpoint has no int8 section: run `python -m ml quantize`")
    if precision != "fp32" and on_cpu and section:
        try:
            return load_int8(model, section), "int8"
        except Int8Unavailable as exc:
            if precision == "int8":
                raise
            log.warning("running fp32: %s", exc)
    return optimize_for_inference(model, device), "fp32"
