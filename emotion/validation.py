"""Checks on uploaded frames: sniffed type, byte and pixel limits, decodability."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from django.conf import settings

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class FrameRejection(Exception):
    code: str  # too_large | unsupported_type | undecodable | too_many_pixels | empty
    reason: str

    @property
    def http_status(self) -> int:
        return {"too_large": 413, "unsupported_type": 415}.get(self.code, 400)


def sniff(data: bytes) -> str | None:
    if data.startswith(JPEG_MAGIC):
        return "image/jpeg"
    if data.startswith(PNG_MAGIC):
        return "image/png"
    return None


def check_frame(data: bytes, size: int | None = None) -> str:
    """Return the sniffed content type, or raise FrameRejection with the reason."""
    limits = settings.EMOTION_LIMITS
    size = max(len(data), size or 0)
    if size > limits["max_frame_bytes"]:
        raise FrameRejection(
            "too_large", f"{size} bytes exceeds the limit of {limits['max_frame_bytes']}"
        )
    if not data:
        raise FrameRejection("empty", "the file is empty")
    kind = sniff(data)
    if kind is None:
        raise FrameRejection("unsupported_type", "not a JPEG or PNG image (by its content)")
    # A reduced decode checks the header and the compressed stream at 1/8 of the cost.
    small = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
    if small is None or small.size == 0:
        raise FrameRejection("undecodable", "the image data cannot be decoded")
    h, w = small.shape[:2]
    max_side = limits["max_side"]
    if h * 8 > max_side + 8 or w * 8 > max_side + 8:
        raise FrameRejection(
            "too_many_pixels", f"about {w * 8}×{h * 8} px exceeds {max_side} px a side"
        )
    return kind


def decode_frame(data: bytes) -> np.ndarray | None:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
