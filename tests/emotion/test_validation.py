"""Frame checks: the pixel limit is read from the PNG/JPEG header, before anything is decoded."""

import random
import struct
import zlib

import cv2
import numpy as np
import pytest

from emotion.validation import (
    MAX_SEQUENCE,
    FrameRejection,
    check_frame,
    check_sequence,
    check_size,
    header_size,
    sniff,
)


def png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def zero_png(width: int, height: int) -> bytes:
    """A valid all-black greyscale PNG, built row by row (never the whole image in memory):
    8000×8000 is ~62 KB of file for 64 MB of pixels."""
    z = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def encode(ext: str, img: np.ndarray, *params) -> bytes:
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


def photo(h: int = 480, w: int = 640) -> np.ndarray:
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), np.uint8), (9, 9), 3)


def jpeg_sof_offset(data: bytes) -> int:
    """Offset of the SOF0 marker cv2's encoder writes (baseline)."""
    i = data.index(b"\xff\xc0")
    return i


def with_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    i = jpeg_sof_offset(data)
    return data[: i + 5] + struct.pack(">HH", height, width) + data[i + 9 :]


@pytest.fixture
def no_decode(monkeypatch):
    """Fail the test if anything asks OpenCV to decode an image."""

    def refuse(*args, **kwargs):
        raise AssertionError("cv2.imdecode was called")

    monkeypatch.setattr(cv2, "imdecode", refuse)


@pytest.fixture
def limits(settings):
    settings.EMOTION_LIMITS = {
        **settings.EMOTION_LIMITS,
        "max_side": 4096,
        "max_frame_bytes": 2 * 1024 * 1024,
    }
    return settings.EMOTION_LIMITS


def test_png_bomb_is_rejected_from_its_header_without_decoding(limits, no_decode):
    bomb = zero_png(8000, 8000)
    assert len(bomb) < 100_000  # far below the 2 MiB byte limit: only the pixel limit stops it
    with pytest.raises(FrameRejection) as e:
        check_frame(bomb)
    assert e.value.code == "too_many_pixels" and e.value.http_status == 400
    assert e.value.reason == "8000×8000 px exceeds the limit of 4096 px a side"


def test_jpeg_declaring_a_huge_frame_is_rejected_without_decoding(limits, no_decode):
    small = encode(".jpg", photo(64, 64))
    assert header_size(small, "image/jpeg") == (64, 64)
    for w, h in ((60000, 60000), (4097, 16), (16, 4097)):
        with pytest.raises(FrameRejection) as e:
            check_frame(with_jpeg_size(small, w, h))
        assert e.value.code == "too_many_pixels" and f"{w}×{h} px" in e.value.reason


def test_the_limits_are_per_side_and_inclusive(limits):
    for w, h in ((4096, 16), (16, 4096)):
        assert check_frame(zero_png(w, h)) == "image/png"
    for w, h in ((4097, 16), (16, 4097)):
        with pytest.raises(FrameRejection) as e:
            check_frame(zero_png(w, h))
        assert e.value.code == "too_many_pixels"


def test_frames_too_thin_to_hold_a_face_are_rejected_from_the_header(limits, no_decode):
    # a 1×1000 strip once reached the worker, where the face detector's downscale of it to
    # 0 px raised and failed the whole batch, other learners' frames included
    for h, w in ((1, 1), (7, 9), (3, 640), (480, 2), (1, 1000), (15, 4096)):
        for ext in (".png", ".jpg"):
            data = encode(ext, photo(h, w))
            with pytest.raises(FrameRejection) as e:
                check_frame(data)
            assert e.value.code == "too_small" and f"{w}×{h} px" in e.value.reason
            assert e.value.http_status == 400


def test_pngs_with_a_side_under_8_px_after_shrinking_are_checked_not_crashed(limits):
    # OpenCV's 1/8-scale PNG decode raised cv2.error (not None) on a side under 8 px
    for h, w in ((16, 16), (16, 640), (480, 17)):
        assert check_frame(encode(".png", photo(h, w))) == "image/png", (w, h)
        assert check_frame(encode(".jpg", photo(h, w))) == "image/jpeg", (w, h)


def test_normal_frames_are_accepted_and_their_header_size_is_the_decoded_size(limits):
    img = photo()
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
    frames = {
        "jpeg": encode(".jpg", img, cv2.IMWRITE_JPEG_QUALITY, 85),
        "progressive jpeg": encode(".jpg", img, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
        "greyscale jpeg": encode(".jpg", gray),
        "jpeg with restart markers": encode(".jpg", img, cv2.IMWRITE_JPEG_RST_INTERVAL, 4),
        "png": encode(".png", img),
        "greyscale png": encode(".png", gray),
        "png with alpha": encode(".png", bgra),
        "16-bit png": encode(".png", img.astype(np.uint16) * 257),
        "odd-sized png": encode(".png", img[:333, :517]),
        "odd-sized jpeg": encode(".jpg", img[:333, :517]),
    }
    for name, data in frames.items():
        kind = sniff(data)
        assert check_frame(data) == kind, name
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        h, w = decoded.shape[:2]
        assert header_size(data, kind) == (w, h), name


def test_jpeg_header_walk_skips_segments_and_fill_bytes_as_libjpeg_does(limits):
    base = encode(".jpg", photo(120, 200))
    sof = jpeg_sof_offset(base)
    # An APP1 (Exif-like) segment full of 0xFF and a fake SOF inside it, a comment, and
    # 0xFF fill bytes before the real frame header: only the real SOF counts.
    fake_sof = b"\xff\xc0\x00\x11\x08\xff\xff\xff\xff"
    app1 = (
        b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(fake_sof) * 3) + b"Exif\x00\x00" + fake_sof * 3
    )
    com = b"\xff\xfe" + struct.pack(">H", 2 + 5) + b"hello"
    crafted = base[:2] + app1 + com + base[2:sof] + b"\xff\xff\xff" + base[sof:]
    assert header_size(crafted, "image/jpeg") == (200, 120)
    decoded = cv2.imdecode(np.frombuffer(crafted, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape[:2] == (120, 200)  # libjpeg agrees
    assert check_frame(crafted) == "image/jpeg"


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"\x89PNG\r\n\x1a\n", "truncated PNG header"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00", "truncated PNG header"),
        (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IDAT", b"\x00" * 13), "does not start with an IHDR"),
        (
            b"\x89PNG\r\n\x1a\n"
            + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 10, 8, 0, 0, 0, 0)),
            "invalid size 0×10",
        ),
        (
            b"\x89PNG\r\n\x1a\n"
            + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 2**31, 10, 8, 0, 0, 0, 0)),
            "invalid size",
        ),
        (b"\xff\xd8\xff", "truncated JPEG"),
        (b"\xff\xd8\xff\xe0", "truncated JPEG header"),
        (b"\xff\xd8\xff\xe0\x00", "truncated JPEG header"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 500, "segment length < 2"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 7, "truncated JPEG"),
        (b"\xff\xd8\xff\xda\x00\x08" + b"\x00" * 6, "no frame header before its image data"),
        (b"\xff\xd8\xff\xd9", "no frame header before its image data"),
        (b"\xff\xd8\xff\xd8\xff\xc0\x00\x11\x08\x00\x10\x00\x10\x03", "no frame header"),
        (b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x10", "truncated JPEG frame header"),
        (b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x00\x00\x10\x03" + b"\x00" * 9, "invalid size 16×0"),
    ],
)
def test_truncated_or_garbage_headers_are_a_clean_rejection(limits, no_decode, data, reason):
    with pytest.raises(FrameRejection) as e:
        check_frame(data)
    assert e.value.code == "undecodable" and reason in e.value.reason


def test_png_header_with_a_wrong_checksum_is_rejected(limits, no_decode):
    good = zero_png(16, 16)
    bad = good[:16] + struct.pack(">I", 17) + good[20:]  # width changed, CRC not
    with pytest.raises(FrameRejection) as e:
        check_frame(bad)
    assert e.value.code == "undecodable" and "checksum" in e.value.reason


def test_every_prefix_and_random_damage_gives_a_size_or_a_rejection(limits):
    """The header parsers never fail with anything but a FrameRejection."""
    rng = random.Random(7)
    for data in (encode(".jpg", photo(40, 50)), zero_png(50, 40)):
        kind = sniff(data)
        for n in range(len(data) if kind == "image/png" else 700):
            try:
                assert header_size(data[:n], kind) == (50, 40)
            except FrameRejection as e:
                assert e.code == "undecodable"
        for _ in range(2000):
            damaged = bytearray(data[:800])
            for _ in range(rng.randint(1, 6)):
                damaged[rng.randrange(3, len(damaged))] = rng.randrange(256)
            try:
                w, h = header_size(bytes(damaged), kind)
                assert w > 0 and h > 0
            except FrameRejection as e:
                assert e.code == "undecodable"


@pytest.mark.parametrize("value", [None, 0, 7, MAX_SEQUENCE])
def test_a_sequence_number_that_fits_the_column_passes(value):
    check_sequence(value)


@pytest.mark.parametrize(
    "value, reason",
    [
        (-3, "sequence must be an integer ≥ 0"),
        ("7", "sequence must be an integer ≥ 0"),
        (1.0, "sequence must be an integer ≥ 0"),
        (True, "sequence must be an integer ≥ 0"),
        ([0], "sequence must be an integer ≥ 0"),
        (MAX_SEQUENCE + 1, f"sequence must be 0…{MAX_SEQUENCE}"),
    ],
)
def test_a_sequence_number_that_is_not_one_is_rejected(value, reason):
    with pytest.raises(FrameRejection) as e:
        check_sequence(value)
    assert (e.value.code, e.value.reason) == ("bad_sequence", reason)


def test_size_limit_says_whose_limit_it_is():
    check_size(100, 100)
    with pytest.raises(FrameRejection) as e:
        check_size(101, 100)
    assert (e.value.code, e.value.reason) == ("too_large", "101 bytes exceeds the limit of 100")
    with pytest.raises(FrameRejection) as e:
        check_size(101, 100, stream=True)
    assert e.value.reason == "101 bytes exceeds this stream's limit of 100 per frame"
    assert e.value.http_status == 413
