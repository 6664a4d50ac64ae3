"""The learner stream's wire protocol (``docs/protocol.md``), apart from any socket: binary
framing, client times, how a client's values are quoted back, and the messages the server
sends. Pure: no database, no channel layer, so it is tested on its own."""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from config.api import clip
from config.parsers import JSONRejected, json_loads_bounded
from config.serve import WS_MAX_MESSAGE_BYTES
from emotion.validation import sniff

CLOSE_UNAUTHENTICATED, CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, CLOSE_ENDED = 4401, 4403, 4404, 4409
CLOSE_TRY_AGAIN = 1013  # RFC 6455 "try again later": a backing service is away
# A stream socket that a newer one for the same session replaced. 4403, not a code of its
# own: the shipped recorder treats 4401/4403/4404/4409 as final and reconnects on any other
# code, so two tabs would take the session from each other for ever.
CLOSE_REPLACED = CLOSE_FORBIDDEN
REPLACED_REASON = (
    "this session is now streaming from another tab or window, so this one stopped "
    "(reload this page to stream from here instead)"
)

FRAME_PREFIX_BYTES = 4  # a binary frame starts with its JSON header's length, big-endian
MAX_HEADER_BYTES = 1024
# The most image bytes one binary frame message can carry through the server's WebSocket
# message limit with the largest header we accept: a frame over this is rejected per frame,
# with a reason (a message over the server's limit closes the socket with 1009).
STREAM_FRAME_BYTES_CAP = WS_MAX_MESSAGE_BYTES - FRAME_PREFIX_BYTES - MAX_HEADER_BYTES

BAD_TIME = "captured_at is not an ISO 8601 time or epoch ms"
UNAVAILABLE = "the server cannot store frames right now: send again shortly"

# ``LearnerSession.end_reason`` (what ``session_end`` was given), as a learner reads it
END_REASONS = {
    "ended": "the session was ended",
    "consent_revoked": "consent for this course was revoked",
    "consent_superseded": "consent was given again, which ends the open session",
    "superseded": "a newer session was started for this course (another tab or device?)",
    "data_erased": "your data for this course was erased",
    "policy_changed": "the course's data policy changed: read it and give consent again",
    "deleted": "an administrator deleted this session",
    "course_deleted": "the course was deleted",
    "idle": "no frame arrived for a long while (camera off, tab closed or computer asleep)",
}


def ended_reason(end_reason: str | None) -> str:
    why = END_REASONS.get(end_reason or "", "the session has ended")
    return f"{why}; start a new session from the course page"


def stream_max_frame_bytes() -> int:
    """Image bytes one streamed frame may have: the configured frame limit (also the REST
    upload's), capped so that the frame fits in one WebSocket message."""
    return min(settings.EMOTION_LIMITS["max_frame_bytes"], STREAM_FRAME_BYTES_CAP)


class BadHeader(ValueError):
    pass


def split_frame(raw: bytes) -> tuple[dict, bytes]:
    """(header, image bytes) of a binary frame message; BadHeader says what is wrong."""
    p = FRAME_PREFIX_BYTES
    if len(raw) < p:
        raise BadHeader(f"a binary frame starts with a {p}-byte header length")
    n = int.from_bytes(raw[:p], "big")
    if not 0 < n <= MAX_HEADER_BYTES:
        hint = " (image bytes without a header?)" if sniff(raw) else ""
        raise BadHeader(f"header length {n} is not 1…{MAX_HEADER_BYTES} bytes{hint}")
    if len(raw) < p + n:
        raise BadHeader(f"header length {n} is longer than the {len(raw) - p} bytes sent")
    try:
        header = json_loads_bounded(raw[p : p + n], max_bytes=MAX_HEADER_BYTES)
    except JSONRejected as e:
        raise BadHeader(f"the header: {e}") from None
    except ValueError:
        raise BadHeader("the header is not valid UTF-8 JSON") from None
    if not isinstance(header, dict):
        raise BadHeader("the header must be a JSON object")
    return header, raw[p + n :]


FRAME_KINDS = ("picture", "crop", "cues")


def frame_kind(header: dict, data: bytes) -> str:
    """A frame header's ``kind``: ``picture`` when absent (today's clients), ``crop`` (the
    bytes are a 48×48 crop, the header has ``cues``) or ``cues`` (no bytes). BadHeader says
    what is wrong."""
    kind = header.get("kind", "picture")
    if kind not in FRAME_KINDS:
        raise BadHeader(f"kind must be one of {', '.join(FRAME_KINDS)}, got {echo(kind)!r}")
    if kind == "cues" and data:
        raise BadHeader(f"a cues frame has no bytes after its header, got {len(data)}")
    return kind


def parse_text(text: str) -> dict:
    """A text message as a JSON object; ValueError with the reason a client is told."""
    try:
        msg = json_loads_bounded(text, max_bytes=MAX_HEADER_BYTES)
    except JSONRejected:
        raise
    except ValueError:
        msg = None
    if not isinstance(msg, dict):
        raise ValueError("messages must be JSON objects")
    return msg


def parse_time(value) -> datetime | None:
    """A client's ``captured_at``: epoch milliseconds, or an ISO 8601 time with an offset.
    None when it is missing or neither (the caller tells the two apart)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, ValueError, OSError):
            return None
    if isinstance(value, str):
        try:
            dt = parse_datetime(value)
        except ValueError:  # well-formed but impossible: 2026-02-30, an offset of 24 h
            return None
        if dt is not None and dt.tzinfo is not None:
            return dt
    return None


def echo(value):
    """A value the client sent, as an ack or an error quotes it back: a number as it is, text
    clipped (``config.api.clip``), anything else (a list, an object) as None."""
    if value is None or isinstance(value, int | float):
        return value
    return clip(value) if isinstance(value, str) else None


def ack(
    sequence,
    status: str,
    credit: int,
    *,
    code: str | None = None,
    reason: str | None = None,
    retry_after: int | None = None,
) -> dict:
    """``{"type": "ack", "sequence", "status", ["code"], ["reason"], ["retry_after"], "credit"}``:
    the answer to every frame; ``sequence`` is the client's, quoted back (:func:`echo`)."""
    msg = {"type": "ack", "sequence": echo(sequence), "status": status}
    optional = {"code": code, "reason": reason, "retry_after": retry_after}
    msg.update((k, v) for k, v in optional.items() if v is not None)
    msg["credit"] = credit
    return msg


def device_policy(course, *, send_crop: bool) -> dict:
    """``ready.device``: what the recorder does when it finds the face itself. ``send_crop``:
    the session estimates emotion, so a face crop goes with the cues (otherwise cues alone,
    no image at all)."""
    return {
        "allow_full_pictures": course.allow_full_pictures,
        "min_capture_fps": course.min_capture_fps,
        "capture_fps": course.capture_fps,
        "attention_cone_degrees": course.attention_cone_degrees,
        "send_crop": send_crop,
    }


def ready(
    session: int,
    *,
    credit: int,
    next_sequence: int,
    capture_fps: float,
    emotion_enabled: bool,
    device: dict | None = None,
) -> dict:
    """The greeting of a stream that was let in (``device``: :func:`device_policy`)."""
    msg = {
        "type": "ready",
        "session": session,
        "credit": credit,
        "next_sequence": next_sequence,
        "capture_fps": capture_fps,
        "max_frame_bytes": stream_max_frame_bytes(),
        "emotion_enabled": emotion_enabled,
        # the recorder stamps captured_at in server time: a computer whose clock is minutes
        # off would otherwise have every frame refused as bad_timestamp
        "server_time": timezone.now().isoformat(),
    }
    if device is not None:
        msg["device"] = device
    return msg


def error(reason: str) -> dict:
    return {"type": "error", "reason": reason}


def unknown_type(kind) -> dict:
    return error(f"unknown message type {echo(kind)!r}")


def credit_message(kind: str, credit: int) -> dict:
    """``credit`` (freed for a socket that had none) or ``pong`` (asked for with ``ping``)."""
    return {"type": kind, "credit": credit}


def closed(code: int, reason: str) -> dict:
    return {"type": "closed", "code": code, "reason": reason}
