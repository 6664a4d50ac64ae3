"""Frames whose decoding work exceeds what their declared size needs: a PNG whose compressed
stream goes on past the image's rows, a JPEG with endless scans. Refused cheaply over REST,
and the worker does not decode them either; real PNGs and JPEGs of every kind still pass."""

from __future__ import annotations

import io
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from emotion.framestore import get_frame_store
from emotion.models import Reading
from emotion.services import readings_analyse
from emotion.stream_protocol import STREAM_FRAME_BYTES_CAP
from emotion.validation import (
    MAX_JPEG_SCANS,
    FrameRejection,
    check_frame,
    decode_frame,
    png_raw_size,
)
from tests.emotion.stream_client import StreamClient, connect, frame_message
from tests.emotion.test_upload import upload
from tests.emotion.test_validation import encode, photo, png_chunk
from tests.factories import ReadingFactory


def png(width, height, idat: bytes, depth=8, colour=0, interlace=0) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    plte = png_chunk(b"PLTE", bytes(3 << depth)) if colour == 3 else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + plte
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def _deflate_segment(data: bytes) -> bytes:
    """``data`` as raw deflate blocks (level 9) ending in a full flush: byte-aligned and
    independent of what comes before, so that segments can be repeated and concatenated."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    return z.compress(data) + z.flush(zlib.Z_FULL_FLUSH)


def zeros_after_rows(width: int, height: int, extra: int) -> bytes:
    """A valid black greyscale PNG whose one zlib stream carries ``extra`` more zero bytes
    after the image's rows. The zeros are 16 MiB segments compressed once and repeated
    (never all in memory, and quick to build); the checksum covers every byte."""
    rows = b"\x00" * ((width + 1) * height)
    block = bytes(16 << 20)
    n, rest = divmod(extra, len(block))
    adler = zlib.adler32(rows)
    for _ in range(n):
        adler = zlib.adler32(block, adler)
    adler = zlib.adler32(block[:rest], adler)
    stream = b"".join(
        [
            b"\x78\xda",  # zlib header: deflate, 32 KB window, level 9
            _deflate_segment(rows),
            _deflate_segment(block) * n,
            _deflate_segment(block[:rest]) if rest else b"",
            zlib.compressobj(9, zlib.DEFLATED, -15).flush(),  # the final, empty block
            struct.pack(">I", adler),
        ]
    )
    return png(width, height, stream)


@pytest.fixture(scope="module")
def png_bomb() -> bytes:
    """640×480 px, ~2 GB of compressed zeros after the rows: a ~2 MB file."""
    return zeros_after_rows(640, 480, 2 << 30)


@pytest.mark.django_db(transaction=True)
def test_the_png_bomb_is_refused_over_rest_in_under_half_a_second(classroom, png_bomb):
    # the same path once first, so that the time is the bomb's, not the first request's imports
    warm = upload(classroom.learner, classroom.session, [("x.png", b"not an image")])
    assert warm.status_code == 415
    t = time.perf_counter()
    r = upload(classroom.learner, classroom.session, [("bomb.png", png_bomb)])
    elapsed = time.perf_counter() - t
    print(f"PNG bomb of {len(png_bomb)} bytes refused over REST in {elapsed:.3f} s")
    assert r.status_code == 400, r.content[:500]
    err = r.json()["error"]
    assert (err["status"], err["code"]) == (400, "frames_rejected")
    (rejected,) = err["details"]
    assert rejected["code"] == "excess_data"
    assert "compressed data" in rejected["reason"] and "640×480" in rejected["reason"]
    assert elapsed < 0.5, f"{elapsed:.2f} s"
    assert not Reading.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_worker_does_not_decode_a_queued_bomb(classroom, png_bomb):
    t = time.perf_counter()
    assert decode_frame(png_bomb) is None
    elapsed = time.perf_counter() - t
    assert elapsed < 0.5, f"{elapsed:.2f} s"
    reading = ReadingFactory(session=classroom.session, analysed_at=None, face_found=False)
    get_frame_store().put(reading.pk, png_bomb, 60)
    readings_analyse(reading_ids=[reading.pk])
    reading.refresh_from_db()
    assert reading.analysed_at is not None and reading.error == "undecodable"


def test_a_stream_short_enough_but_inflating_past_the_rows_is_refused(settings):
    """Within the compressed bound (a few hundred KB) but 64 MB once inflated: found by
    inflating no more than the image's size."""
    bomb = zeros_after_rows(640, 480, 64 << 20)
    assert len(bomb) < png_raw_size(640, 480, 8, 0, False)
    with pytest.raises(FrameRejection) as e:
        check_frame(bomb)
    assert e.value.code == "excess_data" and "inflates to more than" in e.value.reason
    assert decode_frame(bomb) is None


def test_too_many_jpeg_scans_are_refused():
    progressive = encode(".jpg", photo(), cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    scans = progressive.count(b"\xff\xda")
    assert 1 < scans <= MAX_JPEG_SCANS
    assert check_frame(progressive) == "image/jpeg"
    last_scan = progressive[progressive.rindex(b"\xff\xda") : -2]
    bomb = progressive[:-2] + last_scan * MAX_JPEG_SCANS + b"\xff\xd9"
    with pytest.raises(FrameRejection) as e:
        check_frame(bomb)
    assert e.value.code == "excess_data" and "scans" in e.value.reason
    assert decode_frame(bomb) is None


def _pil_png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def rechunk(data: bytes, size: int) -> bytes:
    """The same PNG with its image data split into IDAT chunks of ``size`` bytes."""
    pos, before, idat = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        ctype, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if ctype == b"IDAT":
            idat += body
        elif ctype != b"IEND":
            before += data[pos : pos + 12 + length]
        pos += 12 + length
    chunks = b"".join(png_chunk(b"IDAT", idat[i : i + size]) for i in range(0, len(idat), size))
    return data[:8] + before + chunks + png_chunk(b"IEND", b"")


def _interlaced(width, height, depth, colour, seed=0) -> bytes:
    """An Adam7-interlaced PNG of random samples, its rows laid out pass by pass."""
    rng = np.random.default_rng(seed)
    raw = png_raw_size(width, height, depth, colour, True)
    assert raw > png_raw_size(width, height, depth, colour, False)  # the passes' filter bytes
    # filter type 0 (none) on every row: any other bytes are valid samples
    data = bytearray(rng.integers(0, 256, raw, np.uint8).tobytes())
    bits = depth * {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    pos = 0
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)):  # fmt: skip
        w, h = max(0, -(-(width - x0) // dx)), max(0, -(-(height - y0) // dy))
        if not (w and h):
            continue
        for _ in range(h):
            data[pos] = 0
            pos += 1 + (w * bits + 7) // 8
    assert pos == raw
    return png(width, height, zlib.compress(bytes(data), 6), depth, colour, interlace=1)


def test_real_pngs_of_every_kind_still_pass():
    img = photo()
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    rgba = cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
    frames = {
        "grey": encode(".png", grey),
        "colour": encode(".png", img),
        "rgba": encode(".png", rgba),
        "16-bit grey": encode(".png", grey.astype(np.uint16) * 257),
        "16-bit colour": encode(".png", img.astype(np.uint16) * 257),
        "stored (level 0)": encode(".png", img, cv2.IMWRITE_PNG_COMPRESSION, 0),
        "random noise, stored": encode(
            ".png",
            np.random.default_rng(1).integers(0, 256, (480, 640, 3), np.uint8),
            cv2.IMWRITE_PNG_COMPRESSION,
            0,
        ),
        "palette": _pil_png(Image.fromarray(img[:, :, ::-1]).quantize(256)),
        "1-bit": _pil_png(Image.fromarray(grey).convert("1")),
        "grey + alpha": _pil_png(Image.fromarray(grey).convert("LA")),
        "many small IDAT chunks": rechunk(encode(".png", img), 1024),
        "interlaced colour": _interlaced(640, 480, 8, 2),
        "interlaced grey, odd size": _interlaced(37, 19, 8, 0),
        "interlaced 16-bit RGBA": _interlaced(101, 67, 16, 6),
        "interlaced 2-bit palette": _interlaced(53, 29, 2, 3),
        "interlaced 1-bit grey": _interlaced(17, 16, 1, 0),
    }
    for what, data in frames.items():
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is not None, what
        assert check_frame(data) == "image/png", what
        assert decode_frame(data) is not None, what


@pytest.mark.django_db(transaction=True)
async def test_a_png_bomb_on_the_stream_socket_is_rejected_with_its_reason(classroom):
    bomb = zeros_after_rows(640, 480, 512 << 20)  # fits one socket message
    assert len(bomb) < STREAM_FRAME_BYTES_CAP
    comm, ok, _ = await connect(f"/ws/sessions/{classroom.session.pk}/stream/", classroom.learner)
    assert ok
    await StreamClient(comm).ready()
    t = time.perf_counter()
    await comm.send_to(bytes_data=frame_message(0, bomb))
    ack = await comm.receive_json_from(timeout=30)
    elapsed = time.perf_counter() - t
    await comm.disconnect()
    assert (ack["status"], ack["code"]) == ("rejected", "excess_data"), ack
    assert "640×480" in ack["reason"]
    assert elapsed < 0.5, f"{elapsed:.2f} s"
