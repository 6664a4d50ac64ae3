"""WebSockets: a learner's frame stream, and an instructor's live view of a course."""

from __future__ import annotations

import json
import time
from datetime import datetime

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from emotion.batcher import get_batcher
from emotion.live import course_group, course_snapshot, session_group
from emotion.services import IncomingFrame, SessionClosed, frames_accept, session_check_ingest
from emotion.validation import sniff
from tutoring.models import Course, LearnerSession

CLOSE_UNAUTHENTICATED, CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, CLOSE_ENDED = 4401, 4403, 4404, 4409
IN_FLIGHT_TIMEOUT_S = 30.0  # a frame never reported analysed stops holding credit after this
FRAME_PREFIX_BYTES = 4  # a binary frame starts with its JSON header's length, big-endian
MAX_HEADER_BYTES = 1024
# daphne's default ``websocket_max_message_size`` (1 MiB; ``make run`` and the README start
# daphne without changing it). A larger message makes autobahn drop the whole socket with
# close code 1009 and no reason, so it never reaches the consumer to be rejected per frame.
DAPHNE_MAX_MESSAGE_BYTES = 1024 * 1024
# The most image bytes one binary frame message can carry through daphne with the largest
# header we accept: a frame over this is rejected here, per frame, with a reason.
STREAM_FRAME_BYTES_CAP = DAPHNE_MAX_MESSAGE_BYTES - FRAME_PREFIX_BYTES - MAX_HEADER_BYTES


def stream_max_frame_bytes() -> int:
    """Image bytes one streamed frame may have: the configured frame limit (also the REST
    upload's), capped so that the frame fits in one daphne message."""
    return min(settings.EMOTION_LIMITS["max_frame_bytes"], STREAM_FRAME_BYTES_CAP)


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


class BadHeader(ValueError):
    pass


class JsonSender:
    async def send_json(self, content: dict) -> None:
        await self.send(text_data=json.dumps(content, default=str))

    async def refuse(self, code: int, reason: str) -> None:
        """Close with an application code a browser can see, and say why first.

        Closing before ``accept()`` would make daphne answer the handshake with HTTP 403, and
        a browser then only gets close code 1006 (and no reason): accept, explain, close."""
        await self.accept()
        await self.close_with(code, reason)

    async def close_with(self, code: int, reason: str) -> None:
        await self.send_json({"type": "closed", "code": code, "reason": reason})
        await self.close(code=code)


class SessionStreamConsumer(JsonSender, AsyncWebsocketConsumer):
    """``ws/sessions/<id>/stream/``: the learner's browser sends frames, gets acks and credit.

    A frame is a binary message: 4-byte big-endian header length, a JSON header
    ``{"sequence": n, "captured_at": iso}``, then the JPEG/PNG bytes — or a text message
    ``{"type": "frame", ...header}`` followed by a binary message with the bytes alone.
    Every frame gets an ack ``{"type": "ack", "sequence", "status": accepted | duplicate |
    dropped | rejected, "credit"}``; ``credit`` is how many more frames may be in flight.
    A frame sent without credit is dropped (and said so), never queued without bound.
    A refused or ended stream gets ``{"type": "closed", "code", "reason"}``, then that close
    code (4401 signed out, 4403 consent revoked, 4404 not your session, 4409 ended).
    """

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return await self.refuse(CLOSE_UNAUTHENTICATED, "sign in to stream")
        session_id = int(self.scope["url_route"]["kwargs"]["session_id"])
        self.session = await self._own_session(user, session_id)
        if self.session is None:
            return await self.refuse(CLOSE_NOT_FOUND, "no such session of yours")
        try:
            await database_sync_to_async(session_check_ingest)(session=self.session)
        except SessionClosed:
            return await self.refuse(CLOSE_ENDED, ended_reason(self.session.end_reason))
        except PermissionDenied as e:
            return await self.refuse(CLOSE_FORBIDDEN, str(e) or "streaming is not allowed")
        self.group = session_group(self.session.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.in_flight: dict[int, float] = {}
        self.pending_header: dict | None = None
        self.max_in_flight = settings.STREAM_MAX_IN_FLIGHT
        await self.accept()
        await self.send_json(
            {
                "type": "ready",
                "session": self.session.pk,
                "credit": self.credit(),
                "next_sequence": await self._next_sequence(),
                "capture_fps": self.session.course.capture_fps,
                "max_frame_bytes": stream_max_frame_bytes(),
                "emotion_enabled": self.session.emotion_enabled,
                # the recorder stamps captured_at in server time: a computer whose clock is
                # minutes off would otherwise have every frame refused as bad_timestamp
                "server_time": timezone.now().isoformat(),
            }
        )

    @database_sync_to_async
    def _own_session(self, user, session_id):
        return (
            LearnerSession.objects.select_related("course")
            .filter(pk=session_id, learner=user)
            .first()
        )

    @database_sync_to_async
    def _next_sequence(self) -> int:
        last = (
            self.session.readings.order_by("-sequence").values_list("sequence", flat=True).first()
        )
        return 0 if last is None else last + 1

    async def disconnect(self, code):
        if hasattr(self, "group"):
            self._release(list(self.in_flight))
            await self.channel_layer.group_discard(self.group, self.channel_name)

    def credit(self) -> int:
        """Frames this socket may send now: its own window, capped by what is left of the
        server process's total budget, so overload drops frames instead of queueing them."""
        now = time.monotonic()
        self._release([s for s, t in self.in_flight.items() if now - t > IN_FLIGHT_TIMEOUT_S])
        left_total = settings.STREAM_MAX_IN_FLIGHT_TOTAL - get_batcher().in_flight_total
        return max(0, min(self.max_in_flight - len(self.in_flight), left_total))

    def _release(self, sequences) -> None:
        batcher = get_batcher()
        for seq in sequences:
            if self.in_flight.pop(seq, None) is not None:
                batcher.in_flight_total -= 1

    async def receive(self, text_data=None, bytes_data=None):
        try:
            await self._receive(text_data, bytes_data)
        except BaseException:
            # Channels does not call disconnect() when a handler raises (the database or the
            # broker away), nor when daphne cancels a consumer stuck in an await: give this
            # socket's frames in flight back to the process's budget here, or it shrinks for
            # good and every learner on this server is refused credit
            if hasattr(self, "in_flight"):
                self._release(list(self.in_flight))
            raise

    async def _receive(self, text_data=None, bytes_data=None):
        if text_data is not None:
            return await self._receive_text(text_data)
        try:
            header, data = self._split(bytes_data or b"")
        except BadHeader as e:
            return await self.send_json(
                {
                    "type": "ack",
                    "sequence": None,
                    "status": "rejected",
                    "code": "bad_header",
                    "reason": str(e),
                    "credit": self.credit(),
                }
            )
        await self._frame(header, data)

    async def _receive_text(self, text: str):
        try:
            msg = json.loads(text)
            kind = msg.get("type")
        except (ValueError, AttributeError):
            return await self.send_json(
                {"type": "error", "reason": "messages must be JSON objects"}
            )
        if kind == "frame":
            self.pending_header = msg
        elif kind == "ping":
            await self.send_json({"type": "pong", "credit": self.credit()})
        else:
            await self.send_json({"type": "error", "reason": f"unknown message type {kind!r}"})

    def _split(self, raw: bytes) -> tuple[dict, bytes]:
        """(header, image bytes) of a binary message; BadHeader says what is wrong with it."""
        if self.pending_header is not None:
            header, self.pending_header = self.pending_header, None
            return header, raw
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
            header = json.loads(raw[p : p + n])
        except ValueError:
            raise BadHeader("the header is not valid UTF-8 JSON") from None
        if not isinstance(header, dict):
            raise BadHeader("the header must be a JSON object")
        return header, raw[p + n :]

    async def _frame(self, header: dict, data: bytes):
        seq = header.get("sequence")
        ack = {"type": "ack", "sequence": seq}
        if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
            return await self.send_json(
                {
                    **ack,
                    "status": "rejected",
                    "code": "bad_sequence",
                    "reason": "sequence must be an integer ≥ 0",
                    "credit": self.credit(),
                }
            )
        limit = stream_max_frame_bytes()
        if len(data) > limit:
            return await self.send_json(
                {
                    **ack,
                    "status": "rejected",
                    "code": "too_large",
                    "reason": f"{len(data)} bytes exceeds this stream's limit of {limit} per frame",
                    "credit": self.credit(),
                }
            )
        if self.credit() <= 0:
            return await self.send_json(
                {**ack, "status": "dropped", "reason": "no credit", "credit": 0}
            )
        captured = header.get("captured_at")
        captured_at = _parse_time(captured)
        if captured is not None and captured_at is None:
            return await self.send_json(
                {
                    **ack,
                    "status": "rejected",
                    "code": "bad_timestamp",
                    "reason": "captured_at is not an ISO 8601 time or epoch ms",
                    "credit": self.credit(),
                }
            )
        frame = IncomingFrame(data=data, sequence=seq, captured_at=captured_at)
        try:
            result = await database_sync_to_async(frames_accept)(
                session=self.session, frames=[frame], enqueue=False
            )
        except SessionClosed:
            await database_sync_to_async(self.session.refresh_from_db)(fields=["end_reason"])
            return await self.close_with(CLOSE_ENDED, ended_reason(self.session.end_reason))
        except PermissionDenied as e:
            return await self.close_with(CLOSE_FORBIDDEN, str(e))
        if result.accepted:
            a = result.accepted[0]
            self.in_flight[a["sequence"]] = time.monotonic()
            get_batcher().in_flight_total += 1
            await self.send_json(
                {**ack, "sequence": a["sequence"], "status": "accepted", "credit": self.credit()}
            )
            await get_batcher().add(a["reading"])
        elif result.duplicates:
            await self.send_json({**ack, "status": "duplicate", "credit": self.credit()})
        else:
            r = result.rejected[0]
            await self.send_json(
                {
                    **ack,
                    "status": "rejected",
                    "code": r["code"],
                    "reason": r["reason"],
                    "credit": self.credit(),
                }
            )

    # --- group events -------------------------------------------------------------------------
    async def session_summary(self, event):
        payload = dict(event["payload"])
        self._release(payload.pop("analysed_sequences", []))
        await self.send_json({"type": "summary", **payload, "credit": self.credit()})

    async def session_ended(self, event):
        await self.close_with(CLOSE_ENDED, ended_reason(event["payload"].get("reason")))


def _parse_time(value) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        from datetime import UTC

        try:
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, ValueError, OSError):
            return None
    if isinstance(value, str):
        dt = parse_datetime(value)
        if dt is not None and dt.tzinfo is not None:
            return dt
    return None


class CourseLiveConsumer(JsonSender, AsyncWebsocketConsumer):
    """``ws/courses/<id>/live/``: the course's instructors (and admins) get a snapshot on
    connect, then every summary the workers push for the course. A refused socket gets
    ``{"type": "closed", "code", "reason"}`` and close code 4401 (signed out) or 4403."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return await self.refuse(CLOSE_UNAUTHENTICATED, "sign in to see the live view")
        course_id = int(self.scope["url_route"]["kwargs"]["course_id"])
        course = await self._managed_course(user, course_id)
        if course is None:
            return await self.refuse(
                CLOSE_FORBIDDEN, "only this course's instructors can see its live view"
            )
        self.group = course_group(course.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        snapshot = await database_sync_to_async(course_snapshot)(course)
        await self.send_json({"type": "snapshot", **snapshot})

    @database_sync_to_async
    def _managed_course(self, user, course_id):
        course = Course.objects.filter(pk=course_id).first()
        if course is None:
            return None
        if user.is_platform_admin or course.instructors.filter(pk=user.pk).exists():
            return course
        return None

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def course_summary(self, event):
        await self.send_json({"type": "summary", **event["payload"]})

    async def session_started(self, event):
        await self.send_json({"type": "session_started", **event["payload"]})

    async def session_ended(self, event):
        await self.send_json({"type": "session_ended", **event["payload"]})
