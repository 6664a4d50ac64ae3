"""The single eval-preprocessing preset, shared by evaluation, inference and export.

Every model consumes 48×48 single-channel crops scaled to [0, 1] then normalised with the
checkpoint's mean/std. Training augmentation lives in :mod:`ml.augment`; it starts from the
same tensors this module produces.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch


@dataclass(frozen=True)
class Preprocessing:
    input_size: int = 48
    mean: float = 0.5
    std: float = 0.25
    grayscale: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(**{k: d[k] for k in ("input_size", "mean", "std", "grayscale") if k in d})


DEFAULT_PREPROCESSING = Preprocessing()


def to_uint8(image: np.ndarray) -> np.ndarray:
    """8-bit pixels of the same picture: 16-bit values are scaled by 1/257 (65535 → 255),
    floats in [0, 1] by 255, other types clipped to 0..255; NaN or inf is refused."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise ValueError("image has non-finite pixel values (NaN or inf)")
        if image.size and image.min() >= 0 and image.max() <= 1:
            image = image * 255.0
        return np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return np.clip(image, 0, 255).astype(np.uint8)


def to_gray(image: np.ndarray) -> np.ndarray:
    """Return a 2-D uint8 grayscale view of a gray, BGR or BGRA image of any pixel type
    (see :func:`to_uint8`)."""
    image = to_uint8(image)
    if image.ndim == 2:
        gray = image
    elif image.ndim == 3 and image.shape[2] == 1:
        gray = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] == 3:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif image.ndim == 3 and image.shape[2] == 4:
        gray = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    else:
        raise ValueError(f"unsupported image shape {image.shape}")
    return gray


def resize_crop(gray: np.ndarray, size: int) -> np.ndarray:
    if gray.shape == (size, size):
        return gray
    interp = cv2.INTER_AREA if min(gray.shape) > size else cv2.INTER_LINEAR
    return cv2.resize(gray, (size, size), interpolation=interp)


def crops_to_tensor(crops, pre: Preprocessing = DEFAULT_PREPROCESSING) -> torch.Tensor:
    """uint8 crops (N×H×W, a list of 2-D arrays, or a uint8 tensor) → normalised float N×1×S×S."""
    if isinstance(crops, torch.Tensor):
        t = crops
        if t.dim() == 3:
            t = t.unsqueeze(1)
        t = t.float()
        if t.shape[-1] != pre.input_size or t.shape[-2] != pre.input_size:
            t = torch.nn.functional.interpolate(
                t, size=(pre.input_size, pre.input_size), mode="bilinear", align_corners=False
            )
    else:
        arr = np.stack([resize_crop(to_gray(np.asarray(c)), pre.input_size) for c in crops])
        t = torch.from_numpy(arr).unsqueeze(1).float()
    return (t / 255.0 - pre.mean) / pre.std
