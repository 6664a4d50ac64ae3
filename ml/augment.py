"""Batched training augmentation for 48×48 faces, run on whatever device the batch lives on.

Operates on float images in [0, 1] shaped N×1×H×W (before normalisation): random affine
(rotation, scale, shift, horizontal flip) via one ``grid_sample``, brightness/contrast jitter,
then random erasing. Doing it per batch on the training device keeps a 2-core CPU busy with
the model rather than with Python loops, and makes a GPU run input-bound by nothing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    max_rotation_deg: float = 12.0
    scale: tuple[float, float] = (0.88, 1.12)
    max_shift: float = 0.1  # fraction of the side
    flip: bool = True
    brightness: float = 0.2  # ± additive, in [0, 1] units
    contrast: float = 0.3  # multiplicative factor in [1 - c, 1 + c]
    erase_p: float = 0.5
    erase_area: tuple[float, float] = (0.02, 0.15)

    def to_dict(self) -> dict:
        return asdict(self)


def _rand(shape, g: torch.Generator, device) -> torch.Tensor:
    """Uniform [0, 1) draws from ``g`` on ``g``'s own device, then moved to ``device``: with a
    CPU generator the same numbers as always; with a CUDA one no host copy per batch."""
    return torch.rand(shape, generator=g, device=g.device).to(device)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device) -> torch.Tensor:
    return _rand(n, g, device) * (hi - lo) + lo


def augment_batch(
    x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator, *, return_flip: bool = False
):
    """Return an augmented copy of ``x`` (N×1×H×W, values in [0, 1]); ``g`` is a CPU generator
    or one on ``x``'s device (training on a GPU keeps the whole step there).

    With ``return_flip`` also return the N booleans saying which images were mirrored (offline
    distillation looks up the teacher's answer for the mirrored face). RNG use is unchanged.
    """
    n, _, h, w = x.shape
    dev = x.device
    angle = _uniform(n, -cfg.max_rotation_deg, cfg.max_rotation_deg, g, dev) * math.pi / 180
    scale = _uniform(n, cfg.scale[0], cfg.scale[1], g, dev)
    tx = _uniform(n, -cfg.max_shift, cfg.max_shift, g, dev) * 2
    ty = _uniform(n, -cfg.max_shift, cfg.max_shift, g, dev) * 2
    flip = torch.ones(n, device=dev)
    if cfg.flip:
        flip = torch.where(_rand(n, g, dev) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    c = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, g, dev).view(n, 1, 1, 1)
    b = _uniform(n, -cfg.brightness, cfg.brightness, g, dev).view(n, 1, 1, 1)
    mean = out.mean(dim=(2, 3), keepdim=True)
    out = ((out - mean) * c + mean + b).clamp_(0, 1)

    if cfg.erase_p > 0:
        area = _uniform(n, cfg.erase_area[0], cfg.erase_area[1], g, dev) * h * w
        log_ratio = _uniform(n, math.log(0.3), math.log(3.3), g, dev)
        ratio = torch.exp(log_ratio)
        eh = torch.sqrt(area * ratio).clamp(1, h)
        ew = torch.sqrt(area / ratio).clamp(1, w)
        y0 = _rand(n, g, dev) * (h - eh)
        x0 = _rand(n, g, dev) * (w - ew)
        ys = torch.arange(h, device=dev).view(1, h, 1)
        xs = torch.arange(w, device=dev).view(1, 1, w)
        mask = (
            (ys >= y0.view(n, 1, 1))
            & (ys < (y0 + eh).view(n, 1, 1))
            & (xs >= x0.view(n, 1, 1))
            & (xs < (x0 + ew).view(n, 1, 1))
        )
        apply = (_rand(n, g, dev) < cfg.erase_p).view(n, 1, 1)
        mask = (mask & apply).unsqueeze(1)
        noise = _rand(out.shape, g, dev)
        out = torch.where(mask, noise, out)
    return (out, flip < 0) if return_flip else out
