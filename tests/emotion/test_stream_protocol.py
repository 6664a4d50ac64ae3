"""The stream's wire protocol on its own (``emotion.stream_protocol``): framing, client times,
quoting client values back, and the shape of every message. No socket, no database."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from config.api import MAX_ECHO_CHARS
from config.parsers import JSONRejected
from emotion import stream_protocol as wire
from emotion.stream_protocol import (
    FRAME_PREFIX_BYTES,
    MAX_HEADER_BYTES,
    STREAM_FRAME_BYTES_CAP,
    BadHeader,
    split_frame,
)

JPEG = b"\xff\xd8\xff\xe0 not decoded here"


def framed(header: bytes, data: bytes = JPEG) -> bytes:
    return len(header).to_bytes(FRAME_PREFIX_BYTES, "big") + header + data


# --- framing ----------------------------------------------------------------------------------
def test_a_frame_splits_into_its_header_and_bytes():
    header = {"sequence": 3, "captured_at": "2026-01-01T00:00:00Z"}
    assert split_frame(framed(json.dumps(header).encode())) == (header, JPEG)


def test_a_header_alone_is_a_frame_with_no_bytes():
    assert split_frame(framed(b'{"sequence": 0}', b"")) == ({"sequence": 0}, b"")


def test_a_header_of_exactly_the_maximum_length_is_taken():
    body = b'{"x": "' + b"a" * (MAX_HEADER_BYTES - 9) + b'"}'
    assert len(body) == MAX_HEADER_BYTES
    header, data = split_frame(framed(body))
    assert len(header["x"]) == MAX_HEADER_BYTES - 9 and data == JPEG


@pytest.mark.parametrize(
    "raw, says",
    [
        (b"", "starts with a 4-byte header length"),
        (b"\0\0\1", "starts with a 4-byte header length"),
        ((0).to_bytes(4, "big") + JPEG, "header length 0 is not 1…1024 bytes"),
        ((MAX_HEADER_BYTES + 1).to_bytes(4, "big") + b"{}", "header length 1025 is not"),
        ((50).to_bytes(4, "big") + b'{"sequence": 0}', "longer than the 15 bytes sent"),
        (framed(b"{seq"), "the header is not valid UTF-8 JSON"),
        (framed(b'{"a": "\xff"}'), "the header is not valid UTF-8 JSON"),
        (framed(b"[0]"), "the header must be a JSON object"),
        (framed(b"17"), "the header must be a JSON object"),
        (framed(b"[" * MAX_HEADER_BYTES), "the header: "),
    ],
)
def test_a_malformed_frame_says_what_is_wrong(raw, says):
    with pytest.raises(BadHeader, match=None) as e:
        split_frame(raw)
    assert says in str(e.value), str(e.value)


def test_image_bytes_sent_without_a_header_get_a_hint():
    with pytest.raises(BadHeader, match="image bytes without a header"):
        split_frame(JPEG)
    with pytest.raises(BadHeader) as e:
        split_frame(b"\x7f\0\0\0 not an image")
    assert "without a header" not in str(e.value)


def test_the_frame_cap_leaves_room_for_the_largest_header():
    from config.serve import WS_MAX_MESSAGE_BYTES

    assert STREAM_FRAME_BYTES_CAP + MAX_HEADER_BYTES + FRAME_PREFIX_BYTES == WS_MAX_MESSAGE_BYTES


def test_the_stream_frame_limit_is_the_configured_one_capped(settings):
    settings.EMOTION_LIMITS = {**settings.EMOTION_LIMITS, "max_frame_bytes": 10 * 2**20}
    assert wire.stream_max_frame_bytes() == STREAM_FRAME_BYTES_CAP
    settings.EMOTION_LIMITS = {**settings.EMOTION_LIMITS, "max_frame_bytes": 1000}
    assert wire.stream_max_frame_bytes() == 1000


# --- text messages ----------------------------------------------------------------------------
def test_a_text_message_is_a_json_object():
    assert wire.parse_text('{"type": "ping"}') == {"type": "ping"}
    for text in ("not json", "[1]", '"frame"', "null"):
        with pytest.raises(ValueError, match="^messages must be JSON objects$"):
            wire.parse_text(text)


def test_an_oversized_text_message_is_refused_for_its_size():
    with pytest.raises(JSONRejected, match="exceeds the limit"):
        wire.parse_text('{"type": "' + "a" * MAX_HEADER_BYTES + '"}')


# --- client times -----------------------------------------------------------------------------
def test_captured_at_as_epoch_milliseconds():
    at = datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)
    ms = int(at.timestamp() * 1000)
    assert wire.parse_time(ms) == at
    assert wire.parse_time(float(ms)) == at


def test_captured_at_as_an_iso_time_with_an_offset():
    assert wire.parse_time("2026-03-01T12:00:00Z") == datetime(2026, 3, 1, 12, tzinfo=UTC)
    got = wire.parse_time("2026-03-01T13:30:00+01:30")
    assert got == datetime(2026, 3, 1, 12, tzinfo=UTC) and got.utcoffset() == timedelta(hours=1.5)


@pytest.mark.parametrize(
    "value",
    [None, "2026-03-01T12:00:00", "2026-03-01", "yesterday", "", True, False, 10**30, -(10**30)]
    + [float("nan"), [1], {"ms": 1}, "2026-02-30T00:00:00+00:00", "2026-01-01T00:00:00+24:00"],
)
def test_captured_at_that_is_missing_or_unusable_is_none(value):
    assert wire.parse_time(value) is None


# --- what is quoted back ----------------------------------------------------------------------
def test_client_values_are_quoted_back_clipped_or_not_at_all():
    assert wire.echo(None) is None and wire.echo(7) == 7 and wire.echo(-2.5) == -2.5
    assert wire.echo("abc") == "abc"
    long = wire.echo("9" * 10_000)
    assert len(long) == MAX_ECHO_CHARS and long.endswith("…")
    assert wire.echo([0] * 300) is None and wire.echo({"a": 1}) is None


# --- messages ---------------------------------------------------------------------------------
def test_ack_of_an_accepted_frame_has_no_code_or_reason():
    assert wire.ack(5, "accepted", 3) == {
        "type": "ack",
        "sequence": 5,
        "status": "accepted",
        "credit": 3,
    }


def test_ack_of_a_refused_frame_says_why():
    assert wire.ack("x" * 10_000, "rejected", 0, code="bad_sequence", reason="r") == {
        "type": "ack",
        "sequence": "x" * (MAX_ECHO_CHARS - 1) + "…",
        "status": "rejected",
        "code": "bad_sequence",
        "reason": "r",
        "credit": 0,
    }
    assert wire.ack(None, "dropped", 2, reason="no credit") == {
        "type": "ack",
        "sequence": None,
        "status": "dropped",
        "reason": "no credit",
        "credit": 2,
    }
    dropped = wire.ack(1, "dropped", 1, code="unavailable", reason="r", retry_after=5)
    assert list(dropped) == [
        "type",
        "sequence",
        "status",
        "code",
        "reason",
        "retry_after",
        "credit",
    ]


def test_other_messages():
    assert wire.error("why") == {"type": "error", "reason": "why"}
    assert wire.unknown_type("x" * 10_000)["reason"].startswith("unknown message type 'xxx")
    assert wire.unknown_type(["a"]) == {"type": "error", "reason": "unknown message type None"}
    assert wire.credit_message("credit", 2) == {"type": "credit", "credit": 2}
    assert wire.credit_message("pong", 0) == {"type": "pong", "credit": 0}
    assert wire.closed(4409, "r") == {"type": "closed", "code": 4409, "reason": "r"}


def test_ready_tells_the_limits_and_the_server_time(settings):
    settings.EMOTION_LIMITS = {**settings.EMOTION_LIMITS, "max_frame_bytes": 1000}
    msg = wire.ready(9, credit=4, next_sequence=12, capture_fps=2.0, emotion_enabled=False)
    server_time = datetime.fromisoformat(msg.pop("server_time"))
    assert abs(server_time - datetime.now(UTC)) < timedelta(seconds=5)
    assert msg == {
        "type": "ready",
        "session": 9,
        "credit": 4,
        "next_sequence": 12,
        "capture_fps": 2.0,
        "max_frame_bytes": 1000,
        "emotion_enabled": False,
    }


def test_end_reasons_read_as_sentences_with_what_to_do():
    assert wire.ended_reason("idle").startswith("no frame arrived for a long while")
    for reason in (None, "", "something new"):
        assert wire.ended_reason(reason).startswith("the session has ended")
    assert all(
        wire.ended_reason(r).endswith("; start a new session from the course page")
        for r in [*wire.END_REASONS, None]
    )


def test_close_codes_are_the_ones_the_recorder_treats_as_final():
    assert (wire.CLOSE_UNAUTHENTICATED, wire.CLOSE_FORBIDDEN) == (4401, 4403)
    assert (wire.CLOSE_NOT_FOUND, wire.CLOSE_ENDED, wire.CLOSE_TRY_AGAIN) == (4404, 4409, 1013)
    assert wire.CLOSE_REPLACED == wire.CLOSE_FORBIDDEN
