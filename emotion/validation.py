"""Checks on uploaded frames: sniffed type, byte and pixel limits, decoding work, decodability.

The pixel limit is checked on the size the image's header declares, before anything is
decoded: a PNG of a few dozen KB can declare (and decompress to) a gigapixel, and OpenCV's
reduced decode still inflates a PNG at full size before it shrinks it.

The declared size does not bound the work by itself: a PNG's compressed stream may go on
long after the image's rows (libpng inflates all of it: a 2 MB file of compressed zeros is
2 GB to inflate), and a progressive JPEG may repeat scans over the whole image without end.
So the data is checked against what its declared size needs (:func:`check_decoding_work`)
before any full decode, here and in the worker (:func:`decode_frame`).
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass

import cv2
import numpy as np
from django.conf import settings

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# JPEG start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic).
# 0xC4 (DHT), 0xC8 (JPG, reserved) and 0xCC (DAC) share the range but are not frame headers.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, with no length field: TEM and the restart markers.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


@dataclass
class FrameRejection(Exception):
    # too_large | unsupported_type | undecodable | too_many_pixels | too_small | empty |
    # excess_data (more compressed data or scans than the declared size can use) |
    # device frames: bad_cues | bad_crop | pictures_not_allowed | crop_not_allowed
    code: str
    reason: str

    @property
    def http_status(self) -> int:
        return {"too_large": 413, "unsupported_type": 415}.get(self.code, 400)


MAX_SEQUENCE = 2**31 - 1  # Reading.sequence is a PositiveIntegerField


def check_sequence(value: object) -> None:
    """``bad_sequence`` unless ``value`` is None (the server numbers the frame) or an integer
    0…MAX_SEQUENCE. A stream's header is JSON, so it may hold anything: a string, a list."""
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FrameRejection("bad_sequence", "sequence must be an integer ≥ 0")
    if value > MAX_SEQUENCE:
        raise FrameRejection("bad_sequence", f"sequence must be 0…{MAX_SEQUENCE}")


def check_size(size: int, limit: int, *, stream: bool = False) -> None:
    """``too_large`` when ``size`` bytes exceed ``limit``: the configured frame limit, or for a
    streamed frame that limit capped to what fits in one WebSocket message."""
    if size > limit:
        where = f"this stream's limit of {limit} per frame" if stream else f"the limit of {limit}"
        raise FrameRejection("too_large", f"{size} bytes exceeds {where}")


def sniff(data: bytes) -> str | None:
    if data.startswith(JPEG_MAGIC):
        return "image/jpeg"
    if data.startswith(PNG_MAGIC):
        return "image/png"
    return None


def header_size(data: bytes, kind: str) -> tuple[int, int]:
    """``(width, height)`` as the image's header declares it, read without decoding anything.

    ``kind`` is what :func:`sniff` returned. A truncated or malformed header raises
    ``FrameRejection("undecodable", ...)``.
    """
    if kind == "image/png":
        return _png_size(data)
    if kind == "image/jpeg":
        return _jpeg_size(data)
    raise ValueError(f"no header parser for {kind!r}")


def _bad(reason: str) -> FrameRejection:
    return FrameRejection("undecodable", reason)


def _png_size(data: bytes) -> tuple[int, int]:
    # The signature (8 bytes) is followed by the IHDR chunk, which must come first:
    # length (4) = 13, type (4) = "IHDR", width (4), height (4), 5 more bytes, CRC (4).
    if len(data) < 33:
        raise _bad("truncated PNG header")
    length, ctype = struct.unpack_from(">I4s", data, 8)
    if length != 13 or ctype != b"IHDR":
        raise _bad("PNG does not start with an IHDR header chunk")
    if zlib.crc32(data[12:29]) != struct.unpack_from(">I", data, 29)[0]:
        raise _bad("PNG header checksum mismatch")
    width, height = struct.unpack_from(">II", data, 16)
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise _bad(f"PNG header declares an invalid size {width}×{height}")
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    # Walk the marker segments after SOI up to the first start-of-frame (SOFn) segment,
    # finding markers the way libjpeg does: stray bytes before a marker are skipped, any
    # number of 0xFF fill bytes may precede it, and 0xFF 0x00 is not a marker.
    n, i = len(data), 2
    while True:
        i = data.find(b"\xff", i)
        if i < 0:
            raise _bad("truncated JPEG: no frame header")
        while i < n and data[i] == 0xFF:
            i += 1
        if i >= n:
            raise _bad("truncated JPEG: no frame header")
        marker = data[i]
        i += 1
        if marker == 0x00 or marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD8, 0xD9, 0xDA):  # a second SOI, EOI, or scan data before any frame
            raise _bad("JPEG has no frame header before its image data")
        if i + 2 > n:
            raise _bad("truncated JPEG header")
        (length,) = struct.unpack_from(">H", data, i)
        if length < 2:
            raise _bad("malformed JPEG header (segment length < 2)")
        if marker in _JPEG_SOF:
            # length (2), sample precision (1), height (2), width (2), components (1), ...
            if length < 8 or i + 7 > n:
                raise _bad("truncated JPEG frame header")
            height, width = struct.unpack_from(">HH", data, i + 3)
            if width == 0 or height == 0:  # height 0 defers it to a DNL marker: unsupported
                raise _bad(f"JPEG frame header declares an invalid size {width}×{height}")
            return width, height
        i += length


# PNG colour type → (samples per pixel, allowed bit depths)
_PNG_COLOUR = {
    0: (1, (1, 2, 4, 8, 16)),  # greyscale
    2: (3, (8, 16)),  # RGB
    3: (1, (1, 2, 4, 8)),  # palette
    4: (2, (8, 16)),  # greyscale + alpha
    6: (4, (8, 16)),  # RGBA
}
# Adam7 interlacing: each pass's first column and row, and its steps
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
# encoders write image data in chunks of 8-64 KB: a frame within the size limits needs a few
# hundred; walking more is work for nothing
MAX_PNG_CHUNKS = 4096
# libjpeg's progressive scripts use up to 10 scans (more with optimisers): each scan is a pass
# over the whole image, so their number, not the file's size, bounds a progressive decode
MAX_JPEG_SCANS = 64


def png_raw_size(width: int, height: int, depth: int, colour: int, interlaced: bool) -> int:
    """Bytes the inflated image data of such a PNG holds: each row (of each Adam7 pass) is a
    filter byte and its packed samples."""
    bits = depth * _PNG_COLOUR[colour][0]

    def rows(w: int, h: int) -> int:
        return h * (1 + (w * bits + 7) // 8) if w and h else 0

    if not interlaced:
        return rows(width, height)
    return sum(
        rows((width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy) for x0, y0, dx, dy in _ADAM7
    )


def png_compressed_bound(raw: int) -> int:
    """The most compressed bytes an encoder needs for ``raw`` inflated bytes: deflate's fixed
    codes take at most 9 bits a byte (stored blocks less), plus headers."""
    return raw + raw // 8 + 1024


def _excess(reason: str) -> FrameRejection:
    return FrameRejection("excess_data", reason)


def _png_image_data(data: bytes, w: int, h: int) -> tuple[list[memoryview], int]:
    """The IDAT chunks' data and the inflated size they must have, refused (``excess_data``)
    when they add up to more than that size can take compressed."""
    depth, colour, _, _, interlace = data[24:29]
    if colour not in _PNG_COLOUR or depth not in _PNG_COLOUR[colour][1] or interlace > 1:
        raise _bad(f"PNG header declares colour type {colour} at bit depth {depth}")
    raw = png_raw_size(w, h, depth, colour, bool(interlace))
    bound = png_compressed_bound(raw)
    view, pos, total, chunks = memoryview(data), 8, 0, []
    for _ in range(MAX_PNG_CHUNKS):
        if pos + 8 > len(data):
            return chunks, raw  # truncated: the decode says so
        length, ctype = struct.unpack_from(">I4s", data, pos)
        if ctype == b"IDAT":
            total += length
            if total > bound:
                raise _excess(
                    f"compressed data ({total}+ bytes) exceeds what a {w}×{h} image needs "
                    f"(at most {bound})"
                )
            chunks.append(view[pos + 8 : pos + 8 + length])
        elif ctype == b"IEND":
            return chunks, raw
        pos += 12 + length
    raise _excess(f"more than {MAX_PNG_CHUNKS} PNG chunks")


def _png_check_inflated_size(chunks: list[memoryview], raw: int, w: int, h: int) -> None:
    """Inflate at most ``raw`` + 1 bytes: a stream that holds more than the image's rows is
    refused without inflating the rest."""
    z, out = zlib.decompressobj(), 0
    try:
        for chunk in chunks:
            out += len(z.decompress(chunk, raw - out + 1))
            if out > raw:
                raise _excess(
                    f"compressed data inflates to more than the {raw} bytes a {w}×{h} image needs"
                )
            if z.eof:
                return
    except zlib.error as e:
        raise _bad(f"PNG image data is not a valid zlib stream ({e})") from None


def check_decoding_work(data: bytes, kind: str, w: int, h: int) -> None:
    """Raise ``FrameRejection("excess_data", ...)`` when decoding ``data`` (of the sniffed
    ``kind``, declaring ``w``×``h``) would do more work than an image of that size needs.

    PNG: the image data may not be longer compressed than its inflated size needs, nor inflate
    to more (checked by inflating at most that much). JPEG: at most ``MAX_JPEG_SCANS`` scans
    (counted generously: an embedded thumbnail's scans count too)."""
    if kind == "image/png":
        chunks, raw = _png_image_data(data, w, h)
        _png_check_inflated_size(chunks, raw, w, h)
    elif kind == "image/jpeg":
        scans = data.count(b"\xff\xda")
        if scans > MAX_JPEG_SCANS:
            raise _excess(f"JPEG with {scans} scans (at most {MAX_JPEG_SCANS})")


def _bounded_size(data: bytes) -> tuple[str, int, int]:
    """(kind, width, height) of a frame whose declared size is within the limits; raises
    FrameRejection otherwise."""
    kind = sniff(data)
    if kind is None:
        raise FrameRejection("unsupported_type", "not a JPEG or PNG image (by its content)")
    max_side = settings.EMOTION_LIMITS["max_side"]
    w, h = header_size(data, kind)
    if w > max_side or h > max_side:
        raise FrameRejection(
            "too_many_pixels", f"{w}×{h} px exceeds the limit of {max_side} px a side"
        )
    if w < MIN_SIDE or h < MIN_SIDE:
        raise FrameRejection(
            "too_small", f"{w}×{h} px: a frame needs at least {MIN_SIDE} px a side to show a face"
        )
    return kind, w, h


# no face the detector can find fits in fewer pixels (FER2013 faces are 48 px); thinner images
# are not webcam frames
MIN_SIDE = 16


def check_frame(data: bytes, size: int | None = None) -> str:
    """Return the sniffed content type, or raise FrameRejection with the reason."""
    limits = settings.EMOTION_LIMITS
    check_size(max(len(data), size or 0), limits["max_frame_bytes"])
    if not data:
        raise FrameRejection("empty", "the file is empty")
    max_side = limits["max_side"]
    # The declared size first: a decompression bomb is refused before it is inflated; then
    # the data against what that size needs, before anything decodes all of it.
    kind, w, h = _bounded_size(data)
    check_decoding_work(data, kind, w, h)
    # Then decode (an image now known to be in bounds) to check the compressed stream, at 1/8
    # scale: for a JPEG about 1/8 of the cost of a full decode, for a PNG about half the memory.
    # OpenCV shrinks a PNG after inflating it and fails on a side under 8 px: read those whole.
    scale = 8 if kind == "image/jpeg" or min(w, h) >= 8 else 1
    flag = cv2.IMREAD_REDUCED_GRAYSCALE_8 if scale == 8 else cv2.IMREAD_GRAYSCALE
    try:
        small = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    except cv2.error:
        small = None
    if small is None or small.size == 0:
        raise FrameRejection("undecodable", "the image data cannot be decoded")
    sh, sw = small.shape[:2]
    limit = max_side + scale - 1  # a backstop: the header has bounded the size already
    if sh * scale > limit or sw * scale > limit:
        raise FrameRejection(
            "too_many_pixels", f"about {sw * scale}×{sh * scale} px exceeds {max_side} px a side"
        )
    return kind


def decode_frame(data: bytes) -> np.ndarray | None:
    """The frame in colour, or None when it cannot be decoded or would take more decoding
    work than ``check_frame`` allows (a frame queued by an older version, or by any path
    around the check, costs no more here than one that passed it)."""
    try:
        check_decoding_work(data, *_bounded_size(data))
    except FrameRejection:
        return None
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


# --- device frames: a face crop and cues, or cues alone (docs/protocol.md "Device frames") ---

CROP_SIDE = 48
CROP_BYTES = CROP_SIDE * CROP_SIDE  # 8-bit grayscale, raw, row-major: no PNG or JPEG
BOX_SLACK = 1.001  # x + w and y + h: a box at the picture's edge, after float rounding

# key → (low, high) of a number cue (None: unbounded); ``box`` and ``face`` are checked apart
_CUE_RANGES: dict[str, tuple[float | None, float | None]] = {
    "yaw": (-90.0, 90.0),
    "pitch": (-90.0, 90.0),
    "roll": (-180.0, 180.0),
    "eye_open_left": (0.0, 1.0),
    "eye_open_right": (0.0, 1.0),
    "gaze_yaw": (-90.0, 90.0),
    "gaze_pitch": (-90.0, 90.0),
    "center_offset": (0.0, None),
    "area_fraction": (0.0, 1.0),
}
OPTIONAL_CUES = frozenset({"gaze_yaw", "gaze_pitch"})  # null when the iris model gave none
CUE_KEYS = ("face", "box", *_CUE_RANGES)


def _bad_cues(reason: str) -> FrameRejection:
    return FrameRejection("bad_cues", reason)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _range_text(low: float | None, high: float | None) -> str:
    def fmt(v: float) -> str:
        return f"{v:g}"

    return f"in [{fmt(low)}, {fmt(high)}]" if high is not None else f"≥ {fmt(low)}"


def _shown(value) -> str:
    return clip_text(json.dumps(value) if not isinstance(value, str) else repr(value))


def clip_text(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_box(box) -> list[float]:
    if (
        not isinstance(box, list)
        or len(box) != 4
        or not all(_number(v) and 0 <= v <= 1 for v in box)
    ):
        raise _bad_cues(
            "cues.box must be [x, y, w, h], each a number in [0, 1] (fractions of the "
            f"picture's width and height), got {_shown(box)}"
        )
    x, y, w, h = (float(v) for v in box)
    if x + w > BOX_SLACK or y + h > BOX_SLACK:
        raise _bad_cues(f"cues.box must lie in the picture (x + w ≤ 1, y + h ≤ 1), got {box}")
    return [x, y, w, h]


def check_cues(cues) -> dict:
    """The device's cues, validated (``docs/protocol.md``): numbers as floats, ``box`` as
    ``[x, y, w, h]`` fractions of the picture; absent optional cues are left out. Raises
    ``FrameRejection("bad_cues", reason)`` naming the first key out of its range."""
    if not isinstance(cues, dict):
        raise _bad_cues(f"cues must be a JSON object, got {_shown(cues)}")
    unknown = sorted(k for k in cues if k not in CUE_KEYS)
    if unknown:
        raise _bad_cues(
            f"cues.{clip_text(str(unknown[0]))} is not a cue (known: {', '.join(CUE_KEYS)})"
        )
    face = cues.get("face")
    if not isinstance(face, bool):
        raise _bad_cues(f"cues.face must be true or false, got {_shown(face)}")
    if not face:
        given = [k for k in CUE_KEYS[1:] if cues.get(k) is not None]
        if given:
            raise _bad_cues(f"cues.{given[0]} must be null or absent when cues.face is false")
        return {"face": False}
    out: dict = {"face": True, "box": _check_box(cues.get("box"))}
    for key, (low, high) in _CUE_RANGES.items():
        value = cues.get(key)
        if value is None and key in OPTIONAL_CUES:
            continue
        if not (_number(value) and low <= value and (high is None or value <= high)):
            raise _bad_cues(
                f"cues.{key} must be a number {_range_text(low, high)}, got {_shown(value)}"
            )
        out[key] = float(value)
    return out


def check_crop(data: bytes) -> None:
    """``bad_crop`` unless ``data`` is a raw 48×48 8-bit grayscale crop (2304 bytes)."""
    if len(data) != CROP_BYTES:
        raise FrameRejection(
            "bad_crop",
            f"crop must be {CROP_BYTES} bytes ({CROP_SIDE}×{CROP_SIDE} grayscale), got {len(data)}",
        )


def crop_array(data: bytes) -> np.ndarray:
    """A checked crop's bytes as the 48×48 uint8 image the classifier takes."""
    return np.frombuffer(data, np.uint8).reshape(CROP_SIDE, CROP_SIDE)
