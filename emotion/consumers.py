"""WebSockets: a learner's frame stream, and an instructor's live view of a course."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime
from importlib import import_module

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
from django.core.exceptions import PermissionDenied
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.dateparse import parse_datetime

from config.api import OUTAGE_RETRY_AFTER_S, clip, outage_errors
from config.broadcast import course_group, session_group
from config.parsers import JSONRejected, json_loads_bounded
from config.serve import WS_MAX_MESSAGE_BYTES
from emotion.batcher import get_batcher
from emotion.live import course_snapshot
from emotion.services import (
    IncomingFrame,
    SessionBacklogged,
    SessionClosed,
    frames_accept,
    session_check_ingest,
)
from emotion.validation import sniff
from tutoring.models import Course, LearnerSession, User
from tutoring.selectors import course_is_managed_by

logger = logging.getLogger(__name__)

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
# While a socket lives, whether its user may still have it (account active, still signed in
# with this browser session, still the course's instructor or the session's learner) is
# checked again at the first message either way after this many seconds: the check at connect
# alone let a socket outlive all three for as long as the server keeps it (up to a day). A check
# is three small queries (1.7 ms, p95 5.8 ms, on a busy 2-core machine) in the sync thread
# that also takes every learner's frames; a live-view message costs 0.2-0.3 ms to pass on
# without it and 4-4.8 ms with it. So not on every message: once every 5 s is < 1 ms/s a
# socket, and a user who lost access gets at most 5 s more.
RECHECK_SECONDS = 5.0
IN_FLIGHT_TIMEOUT_S = 30.0  # a frame never reported analysed stops holding credit after this
FRAME_PREFIX_BYTES = 4  # a binary frame starts with its JSON header's length, big-endian
MAX_HEADER_BYTES = 1024
# The most image bytes one binary frame message can carry through the server's WebSocket
# message limit with the largest header we accept: a frame over this is rejected here, per
# frame, with a reason (a message over the server's limit closes the socket with 1009).
STREAM_FRAME_BYTES_CAP = WS_MAX_MESSAGE_BYTES - FRAME_PREFIX_BYTES - MAX_HEADER_BYTES


def stream_max_frame_bytes() -> int:
    """Image bytes one streamed frame may have: the configured frame limit (also the REST
    upload's), capped so that the frame fits in one WebSocket message."""
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


def signed_in_user(scope) -> User | None:
    """The scope's user as the database has it now, or None when that sign-in no longer holds:
    the account was deactivated or deleted, or (session cookie) the session was signed out,
    flushed or expired, now belongs to someone else, or the password changed since.

    Sync (database): call it through ``database_sync_to_async``. Read-only, unlike
    ``django.contrib.auth.get_user``, which flushes or cycles the session it checks."""
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        return None
    session = scope.get("session")
    key = getattr(session, "session_key", None) if session is not None else None
    if not key:  # not cookie auth (a scope made with its user): the account alone
        return User.objects.filter(pk=user.pk, is_active=True).first()
    data = import_module(settings.SESSION_ENGINE).SessionStore(key).load()  # fresh, not cached
    backend_path = data.get(BACKEND_SESSION_KEY)
    if (
        data.get(SESSION_KEY) != user._meta.pk.value_to_string(user)
        or backend_path not in settings.AUTHENTICATION_BACKENDS
    ):
        return None
    fresh = load_backend(backend_path).get_user(user.pk)
    if fresh is None or not fresh.is_active:
        return None
    session_hash = data.get(HASH_SESSION_KEY) or ""
    hashes = [fresh.get_session_auth_hash(), *fresh.get_session_auth_fallback_hash()]
    if not any(constant_time_compare(session_hash, h) for h in hashes):
        return None
    return fresh


class JsonSender:
    """What both sockets share: JSON messages, refusals a browser can read, and the check,
    again while the socket lives, that its user may still have it (``still_allowed``)."""

    #: set once the socket is being closed by the server: nothing more is sent on it
    shut: bool = False
    checked_at: float = 0.0

    async def send_json(self, content: dict) -> None:
        await self.send(text_data=json.dumps(content, default=str))

    async def refuse(self, code: int, reason: str) -> None:
        """Close with an application code a browser can see, and say why first.

        Closing before ``accept()`` would make the server answer the handshake with HTTP 403, and
        a browser then only gets close code 1006 (and no reason): accept, explain, close."""
        await self.accept()
        await self.close_with(code, reason)

    async def refuse_unavailable(self, exc: BaseException) -> None:
        """The channel layer (Redis) is away: a code the recorder and the live page reconnect
        on (1013, try again later), not a crash (1011)."""
        logger.warning("socket refused, channel layer away: %s: %s", type(exc).__name__, exc)
        self.shut = True
        await self.refuse(CLOSE_TRY_AGAIN, "the server is briefly unavailable: reconnecting")

    async def close_with(self, code: int, reason: str) -> None:
        await self.send_json({"type": "closed", "code": code, "reason": reason})
        await self.close(code=code)

    def refusal_now(self) -> tuple[int, str] | None:
        """(close code, reason) if this socket's user may no longer have it, else None. Sync
        (database); each consumer says what its connect check required."""
        raise NotImplementedError

    async def still_allowed(self) -> bool:
        """Whether this socket may go on; when not, it is closed (told why) and False.

        Checked at most every RECHECK_SECONDS: call it before sending anything the user
        might no longer be allowed to see, and before taking anything from them."""
        if self.shut:
            return False
        if time.monotonic() - self.checked_at < RECHECK_SECONDS:
            return True
        refusal = await database_sync_to_async(self.refusal_now)()
        self.checked_at = time.monotonic()
        if refusal is None:
            return True
        await self.shut_with(*refusal)
        return False

    async def shut_with(self, code: int, reason: str) -> None:
        """Close from the server's side: leave the group first, so nothing more is sent."""
        if self.shut:
            return
        self.shut = True
        await self.leave()
        await self.close_with(code, reason)

    async def leave(self) -> None:
        if hasattr(self, "group"):
            try:
                await self.channel_layer.group_discard(self.group, self.channel_name)
            except outage_errors():
                pass  # Redis away: the membership expires with the layer's group_expiry


class SessionStreamConsumer(JsonSender, AsyncWebsocketConsumer):
    """``ws/sessions/<id>/stream/``: the learner's browser sends frames, gets acks and credit.

    A frame is a binary message: 4-byte big-endian header length, a JSON header
    ``{"sequence": n, "captured_at": iso}``, then the JPEG/PNG bytes — or a text message
    ``{"type": "frame", ...header}`` followed by a binary message with the bytes alone.
    Every frame gets an ack ``{"type": "ack", "sequence", "status": accepted | duplicate |
    dropped | rejected, "credit"}``; ``credit`` is how many more frames may be in flight.
    A frame sent without credit is dropped (and said so), never queued without bound. Credit
    is granted from what the workers can take (``emotion.admission``) and reserved: a frame
    sent within it is not refused for want of room. A socket left without credit gets
    ``{"type": "credit", "credit"}`` when some is freed for it (or asks with ``ping``).
    A refused or ended stream gets ``{"type": "closed", "code", "reason"}``, then that close
    code (4401 signed out, 4403 consent revoked, 4404 not your session, 4409 ended).

    While it lives the socket is checked again (``RECHECK_SECONDS``): a deactivated account or
    a signed-out browser session gets 4401, then nothing more. One stream per session: a newer
    socket for the session (a reopened tab; on any server process, through the channel
    layer) replaces this one, which is closed with 4403 and ``REPLACED_REASON``, so that one
    learner cannot hold the process's whole in-flight budget with many sockets.
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
        self.in_flight: dict[int, float] = {}
        self.offers: set[asyncio.Task] = set()
        self.pending_header: dict | None = None
        self.max_in_flight = settings.STREAM_MAX_IN_FLIGHT
        self.group = session_group(self.session.pk)
        self.opened = (time.time_ns(), self.channel_name)
        try:
            await self.channel_layer.group_add(self.group, self.channel_name)
            # the newest stream of a session wins: older ones (any process) close on this
            await self.channel_layer.group_send(
                self.group,
                {"type": "stream.replaced", "at": self.opened[0], "by": self.channel_name},
            )
        except outage_errors() as e:
            return await self.refuse_unavailable(e)
        self.checked_at = time.monotonic()
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

    def refusal_now(self) -> tuple[int, str] | None:
        user = signed_in_user(self.scope)
        if user is None:
            return CLOSE_UNAUTHENTICATED, (
                "you are no longer signed in (signed out, or the account was deactivated): "
                "sign in again to stream"
            )
        if not LearnerSession.objects.filter(pk=self.session.pk, learner=user).exists():
            return CLOSE_NOT_FOUND, "no such session of yours"
        return None

    @database_sync_to_async
    def _next_sequence(self) -> int:
        last = (
            self.session.readings.order_by("-sequence").values_list("sequence", flat=True).first()
        )
        return 0 if last is None else last + 1

    async def disconnect(self, code):
        await self.leave()

    async def leave(self) -> None:
        if hasattr(self, "in_flight"):
            self._release(list(self.in_flight))
            get_batcher().forget(self)
        await super().leave()

    def credit(self) -> int:
        """Frames this socket may send now: its own window, capped by what the server process
        and the workers can take (``FrameBatcher.grant``), so that past saturation clients skip
        frames instead of uploading frames that are refused or queued."""
        now = time.monotonic()
        self._release([s for s, t in self.in_flight.items() if now - t > IN_FLIGHT_TIMEOUT_S])
        return get_batcher().grant(self, self.window_left())

    def window_left(self) -> int:
        return self.max_in_flight - len(self.in_flight)

    def offer_credit(self, credit: int) -> None:
        """Credit freed for this socket while it had none: tell the client now."""
        if not self.shut:
            task = asyncio.ensure_future(self._send_credit(credit))
            self.offers.add(task)
            task.add_done_callback(self.offers.discard)

    async def _send_credit(self, credit: int) -> None:
        try:
            await self.send_json({"type": "credit", "credit": credit})
        except Exception:  # closed meanwhile: its grant lapses or goes with forget()
            get_batcher().forget(self)

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
            # broker away), nor when the server cancels a consumer stuck in an await: give this
            # socket's frames in flight back to the process's budget here, or it shrinks for
            # good and every learner on this server is refused credit
            if hasattr(self, "in_flight"):
                self._release(list(self.in_flight))
                get_batcher().forget(self)
            raise

    async def _receive(self, text_data=None, bytes_data=None):
        if not await self.still_allowed():
            return
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
            msg = json_loads_bounded(text, max_bytes=MAX_HEADER_BYTES)
        except JSONRejected as e:
            return await self.send_json({"type": "error", "reason": str(e)})
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            return await self.send_json(
                {"type": "error", "reason": "messages must be JSON objects"}
            )
        kind = msg.get("type")
        if kind == "frame":
            self.pending_header = msg
        elif kind == "ping":
            await self.send_json({"type": "pong", "credit": self.credit()})
        else:
            await self.send_json(
                {"type": "error", "reason": f"unknown message type {_echo(kind)!r}"}
            )

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
            header = json_loads_bounded(raw[p : p + n], max_bytes=MAX_HEADER_BYTES)
        except JSONRejected as e:
            raise BadHeader(f"the header: {e}") from None
        except ValueError:
            raise BadHeader("the header is not valid UTF-8 JSON") from None
        if not isinstance(header, dict):
            raise BadHeader("the header must be a JSON object")
        return header, raw[p + n :]

    async def _frame(self, header: dict, data: bytes):
        seq = header.get("sequence")
        ack = {"type": "ack", "sequence": _echo(seq)}
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
        if not get_batcher().take(self, self.window_left()):
            return await self.send_json(
                {**ack, "status": "dropped", "reason": "no credit", "credit": self.credit()}
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
                session=self.session,
                frames=[frame],
                enqueue=False,
                # credit bounds one socket; this bounds the session however often it reconnects
                max_pending=settings.EMOTION_LIMITS["max_pending_per_session"],
            )
        except SessionBacklogged as e:
            return await self.send_json(
                {**ack, "status": "dropped", "reason": str(e), "credit": self.credit()}
            )
        except SessionClosed:
            await database_sync_to_async(self.session.refresh_from_db)(fields=["end_reason"])
            return await self.shut_with(CLOSE_ENDED, ended_reason(self.session.end_reason))
        except PermissionDenied as e:
            return await self.shut_with(CLOSE_FORBIDDEN, str(e))
        except outage_errors() as e:  # the frame store or the database away: nothing kept
            logger.warning("stream frame not accepted: %s: %s", type(e).__name__, e)
            return await self.send_json(
                {
                    **ack,
                    "status": "dropped",
                    "code": "unavailable",
                    "reason": "the server cannot store frames right now: send again shortly",
                    "retry_after": OUTAGE_RETRY_AFTER_S,
                    "credit": self.credit(),
                }
            )
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
        if await self.still_allowed():
            await self.send_json({"type": "summary", **payload, "credit": self.credit()})

    async def session_ended(self, event):
        await self.shut_with(CLOSE_ENDED, ended_reason(event["payload"].get("reason")))

    async def stream_replaced(self, event):
        """A socket for this session opened (``connect``): the older of the two closes."""
        if (event["at"], event["by"]) > self.opened:
            await self.shut_with(CLOSE_REPLACED, REPLACED_REASON)


def _echo(value):
    """A value the client sent, as an ack or an error quotes it back: a number as it is, text
    clipped (``config.api.clip``), anything else (a list, an object) as None."""
    if value is None or isinstance(value, int | float):
        return value
    return clip(value) if isinstance(value, str) else None


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


NOT_INSTRUCTOR = "only this course's instructors can see its live view"


class CourseLiveConsumer(JsonSender, AsyncWebsocketConsumer):
    """``ws/courses/<id>/live/``: the course's instructors (and admins) get a snapshot on
    connect, then every summary the workers push for the course. A refused socket gets
    ``{"type": "closed", "code", "reason"}`` and close code 4401 (signed out) or 4403.

    Before a message is passed on, the socket is checked again (at most every
    ``RECHECK_SECONDS``): an instructor removed from the course gets 4403, a deactivated
    account or a signed-out browser session 4401, and then nothing more."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return await self.refuse(CLOSE_UNAUTHENTICATED, "sign in to see the live view")
        self.course_id = int(self.scope["url_route"]["kwargs"]["course_id"])
        course = await database_sync_to_async(self._managed_course)(user, self.course_id)
        if course is None:
            return await self.refuse(CLOSE_FORBIDDEN, NOT_INSTRUCTOR)
        self.group = course_group(course.pk)
        try:
            await self.channel_layer.group_add(self.group, self.channel_name)
        except outage_errors() as e:
            return await self.refuse_unavailable(e)
        self.checked_at = time.monotonic()
        await self.accept()
        snapshot = await database_sync_to_async(course_snapshot)(course)
        self.summary_at = datetime.fromisoformat(snapshot["summary"]["at"])
        await self.send_json({"type": "snapshot", **snapshot})

    @staticmethod
    def _managed_course(user, course_id) -> Course | None:
        course = Course.objects.filter(pk=course_id).first()
        if course is None or not course_is_managed_by(course=course, user=user):
            return None
        return course

    def refusal_now(self) -> tuple[int, str] | None:
        user = signed_in_user(self.scope)
        if user is None:
            return CLOSE_UNAUTHENTICATED, (
                "you are no longer signed in (signed out, or the account was deactivated): "
                "sign in again to see the live view"
            )
        # the connect check's selector, on the course's id alone (one query fewer)
        if not course_is_managed_by(course=Course(pk=self.course_id), user=user):
            return CLOSE_FORBIDDEN, NOT_INSTRUCTOR
        return None

    async def disconnect(self, code):
        await self.leave()

    async def course_summary(self, event):
        # workers push summaries concurrently: one made before the last one sent is stale
        at = datetime.fromisoformat(event["payload"]["summary"]["at"])
        if at < self.summary_at:
            return
        self.summary_at = at
        if await self.still_allowed():
            await self.send_json({"type": "summary", **event["payload"]})

    async def session_started(self, event):
        if await self.still_allowed():
            await self.send_json({"type": "session_started", **event["payload"]})

    async def session_ended(self, event):
        if await self.still_allowed():
            await self.send_json({"type": "session_ended", **event["payload"]})
