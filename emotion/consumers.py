"""WebSockets: a learner's frame stream, and an instructor's live view of a course.

The stream's wire protocol is ``emotion.stream_protocol``, its credit ``emotion.credit``, the
check again while a socket lives ``emotion.socket_auth``; frames are validated by
``emotion.validation`` and accepted by ``emotion.services.frames_accept``."""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.exceptions import PermissionDenied

from config.api import OUTAGE_RETRY_AFTER_S as RETRY_S
from config.api import outage_errors
from config.broadcast import course_group, group_join, session_group
from config.db import db_sync_to_async
from emotion import stream_protocol as wire
from emotion.batcher import get_batcher
from emotion.credit import CreditBudget
from emotion.fanout import get_fanout
from emotion.live import course_snapshot
from emotion.services import (
    IncomingFrame,
    SessionBacklogged,
    SessionClosed,
    frames_accept,
    session_check_ingest,
    session_sends_crop,
)
from emotion.socket_auth import AuthRecheckMixin
from emotion.summary import read_time
from emotion.validation import FrameRejection, check_sequence, check_size
from tutoring.models import Course, LearnerSession
from tutoring.selectors import course_is_managed_by

logger = logging.getLogger(__name__)

NOT_SIGNED_IN = "you are no longer signed in (signed out, or the account was deactivated): "
NOT_INSTRUCTOR = "only this course's instructors can see its live view"


class SessionStreamConsumer(AuthRecheckMixin, AsyncWebsocketConsumer):
    """``ws/sessions/<id>/stream/``: the learner's browser sends frames, gets acks and credit
    (the protocol: ``docs/protocol.md``, ``emotion.stream_protocol``).

    Every frame is acked; one sent without credit is dropped (and said so), never queued
    without bound. Credit (``emotion.credit``) is granted from what the workers can take
    (``emotion.admission``) and reserved: a frame sent within it is not refused for want of
    room; cues frames, which no worker sees, have the process's own credit instead. While it
    lives the socket is checked again (``RECHECK_SECONDS``): a deactivated account or a
    signed-out browser session gets 4401, then nothing more. One stream per
    session: a newer socket for the session (a reopened tab; on any server process, through
    the channel layer) replaces this one, which is closed with 4403 and ``REPLACED_REASON``,
    so that one learner cannot hold the process's whole in-flight budget with many sockets.
    """

    budget: CreditBudget | None = None  # set once the connect checks passed

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return await self.refuse(wire.CLOSE_UNAUTHENTICATED, "sign in to stream")
        session_id = int(self.scope["url_route"]["kwargs"]["session_id"])
        refusal = await db_sync_to_async(self._connect_refusal)(user, session_id)
        if refusal is not None:
            return await self.refuse(*refusal)
        s = self.session
        self.budget = CreditBudget(
            get_batcher(),
            settings.STREAM_MAX_IN_FLIGHT,
            self._offer,
            cues=self._sends_cues_only(),
        )
        self.offers: set[asyncio.Task] = set()
        self.pending_header: dict | None = None
        self.group = session_group(self.session.pk)
        self.opened = (time.time_ns(), self.channel_name)
        try:
            self.staying = await group_join(self.channel_layer, self.group, self.channel_name)
            # the newest stream of a session wins: older ones (any process) close on this
            await self.channel_layer.group_send(
                self.group,
                {"type": "stream.replaced", "at": self.opened[0], "by": self.channel_name},
            )
            # the workers' summaries of its frames come through the process's reader
            self.fanout = get_fanout(self.channel_layer)
            await self.fanout.add(s.pk, self)
        except outage_errors() as e:
            return await self.refuse_unavailable(e)
        self.checked_at = time.monotonic()
        await self.accept()
        await self.send_json(
            wire.ready(
                s.pk,
                credit=self.budget.credit(),
                next_sequence=await self._next_sequence(),
                capture_fps=s.course.capture_fps,
                emotion_enabled=s.emotion_enabled,
                device=wire.device_policy(s.course, send_crop=session_sends_crop(s)),
            )
        )

    def _sends_cues_only(self) -> bool:
        """Whether the first credit is for cues frames: the client said it sends them
        (``?kind=cues``: otherwise a fresh socket's credit is the workers' room, which idle
        workers keep at a few frames for every socket together), or the session can send
        nothing else (the course forbids full pictures and the learner sends no crop)."""
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        if query.get("kind") == ["cues"]:
            return True
        return not self.session.course.allow_full_pictures and not session_sends_crop(self.session)

    def _connect_refusal(self, user, session_id: int) -> tuple[int, str] | None:
        """(close code, reason) when ``user`` may not stream into the session; sync."""
        q = LearnerSession.objects.select_related("course").filter(pk=session_id, learner=user)
        self.session = q.first()
        if self.session is None:
            return wire.CLOSE_NOT_FOUND, "no such session of yours"
        try:
            session_check_ingest(session=self.session)
        except SessionClosed:
            return wire.CLOSE_ENDED, wire.ended_reason(self.session.end_reason)
        except PermissionDenied as e:
            return wire.CLOSE_FORBIDDEN, str(e) or "streaming is not allowed"
        return None

    @db_sync_to_async
    def _next_sequence(self) -> int:
        last = self.session.readings.order_by("-sequence").values_list("sequence", flat=True)
        return 0 if (n := last.first()) is None else n + 1

    SIGNED_OUT = wire.CLOSE_UNAUTHENTICATED, NOT_SIGNED_IN + "sign in again to stream"

    @classmethod
    def refusals_now(cls, consumers, users):
        sessions = LearnerSession.objects.filter(pk__in={c.session.pk for c in consumers})
        owned = set(sessions.values_list("pk", "learner_id"))
        gone = wire.CLOSE_NOT_FOUND, "no such session of yours"
        return [
            None if (c.session.pk, u.pk) in owned else gone
            for c, u in zip(consumers, users, strict=True)
        ]

    async def disconnect(self, code):
        await self.leave()

    async def leave(self) -> None:
        if self.budget is not None:
            self.budget.close()
        self._unfan()
        await super().leave()

    def _unfan(self) -> None:
        if getattr(self, "fanout", None) is not None:
            self.fanout.discard(self.session.pk, self)
            self.fanout = None

    def _offer(self, credit: int) -> None:
        """Credit freed for this socket while it had none: tell the client now."""
        if not self.shut:
            task = asyncio.ensure_future(self._send_credit(credit))
            self.offers.add(task)
            task.add_done_callback(self.offers.discard)

    async def _send_credit(self, credit: int) -> None:
        try:
            await self.send_json(wire.credit_message("credit", credit))
        except Exception:  # closed meanwhile: its grant lapses or goes with forget()
            get_batcher().forget(self.budget)

    async def _ack(self, sequence, status: str, **extra) -> None:
        await self.send_json(wire.ack(sequence, status, self.budget.credit(), **extra))

    async def receive(self, text_data=None, bytes_data=None):
        try:
            await self._receive(text_data, bytes_data)
        except BaseException:
            # Channels does not call disconnect() when a handler raises (the database or the
            # broker away), nor when the server cancels a consumer stuck in an await: give this
            # socket's frames in flight back to the process's budget here, or it shrinks for
            # good and every learner on this server is refused credit
            if self.budget is not None:
                self.budget.close()
            self._unfan()  # and no summary goes to it any more
            raise

    async def _receive(self, text_data=None, bytes_data=None):
        if not await self.still_allowed():
            return
        if text_data is not None:
            return await self._receive_text(text_data)
        header, self.pending_header = self.pending_header, None
        data = bytes_data or b""
        if header is None:
            try:
                header, data = wire.split_frame(data)
            except wire.BadHeader as e:
                return await self._ack(None, "rejected", code="bad_header", reason=str(e))
        await self._frame(header, data)

    async def _receive_text(self, text: str):
        try:
            msg = wire.parse_text(text)
        except ValueError as e:
            return await self.send_json(wire.error(str(e)))
        kind = msg.get("type")
        if kind == "frame":
            self.pending_header = msg
        elif kind == "cues":  # a cues frame as text: no bytes follow
            await self._frame({**msg, "kind": "cues"}, b"")
        elif kind == "ping":
            await self.send_json(wire.credit_message("pong", self.budget.credit()))
        else:
            await self.send_json(wire.unknown_type(kind))

    async def _frame(self, header: dict, data: bytes):
        seq, captured = header.get("sequence"), header.get("captured_at")
        try:  # before credit is taken: a frame refused for its header costs none
            kind = wire.frame_kind(header, data)
        except wire.BadHeader as e:
            return await self._ack(seq, "rejected", code="bad_header", reason=str(e))
        try:
            check_sequence(seq)
            check_size(len(data), wire.stream_max_frame_bytes(), stream=True)
        except FrameRejection as e:
            return await self._ack(seq, "rejected", code=e.code, reason=e.reason)
        if not self.budget.take(kind):
            return await self._ack(seq, "dropped", reason="no credit")
        captured_at = wire.parse_time(captured)
        if captured is not None and captured_at is None:
            return await self._ack(seq, "rejected", code="bad_timestamp", reason=wire.BAD_TIME)
        frame = IncomingFrame(
            data=data, sequence=seq, captured_at=captured_at, kind=kind, cues=header.get("cues")
        )
        await self._store(seq, frame)

    async def _store(self, seq, frame: IncomingFrame):
        """Hand the frame to ``frames_accept`` and ack what became of it."""
        try:
            if frame.kind != "picture":  # written with other sockets' device frames at once
                result = await get_batcher().accept_device(self.session, frame)
            else:
                result = await db_sync_to_async(frames_accept)(
                    session=self.session,
                    frames=[frame],
                    enqueue=False,
                    # credit bounds one socket; this bounds the session however often it
                    # reconnects
                    max_pending=settings.EMOTION_LIMITS["max_pending_per_session"],
                )
        except SessionBacklogged as e:
            return await self._ack(seq, "dropped", reason=str(e))
        except SessionClosed:
            await db_sync_to_async(self.session.refresh_from_db)(fields=["end_reason"])
            return await self.shut_with(
                wire.CLOSE_ENDED, wire.ended_reason(self.session.end_reason)
            )
        except PermissionDenied as e:
            return await self.shut_with(wire.CLOSE_FORBIDDEN, str(e))
        except outage_errors() as e:  # the frame store or the database away: nothing kept
            logger.warning("stream frame not accepted: %s: %s", type(e).__name__, e)
            return await self._ack(
                seq, "dropped", code="unavailable", reason=wire.UNAVAILABLE, retry_after=RETRY_S
            )
        if result.accepted:
            a = result.accepted[0]
            if a["queued"]:  # held until analysed; a cues frame was written, so it holds none
                self.budget.accepted(a["sequence"])
            await self._ack(a["sequence"], "accepted")
            if a["queued"]:
                await get_batcher().add(a["reading"])
        elif result.duplicates:
            await self._ack(seq, "duplicate")
        else:
            r = result.rejected[0]
            await self._ack(seq, "rejected", code=r["code"], reason=r["reason"])
        if result.summary is not None:  # cues frames: the summary comes back with them
            await self.session_summary({"payload": result.summary})

    # --- group events -------------------------------------------------------------------------
    async def session_summary(self, event):
        payload = dict(event["payload"])
        self.budget.analysed(payload.pop("analysed_sequences", []))
        if await self.still_allowed():
            await self.send_json({"type": "summary", **payload, "credit": self.budget.credit()})

    async def session_ended(self, event):
        await self.shut_with(wire.CLOSE_ENDED, wire.ended_reason(event["payload"].get("reason")))

    async def stream_replaced(self, event):
        """A socket for this session opened (``connect``): the older of the two closes."""
        if (event["at"], event["by"]) > self.opened:
            await self.shut_with(wire.CLOSE_REPLACED, wire.REPLACED_REASON)


class CourseLiveConsumer(AuthRecheckMixin, AsyncWebsocketConsumer):
    """``ws/courses/<id>/live/``: the course's instructors (and admins) get a snapshot on
    connect, then every summary the workers push for the course. A refused socket gets
    ``{"type": "closed", "code", "reason"}`` and close code 4401 (signed out) or 4403.

    Before a message is passed on, the socket is checked again (at most every
    ``RECHECK_SECONDS``): an instructor removed from the course gets 4403, a deactivated
    account or a signed-out browser session 4401, and then nothing more."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return await self.refuse(wire.CLOSE_UNAUTHENTICATED, "sign in to see the live view")
        self.course_id = int(self.scope["url_route"]["kwargs"]["course_id"])
        course = await db_sync_to_async(self._managed_course)(user, self.course_id)
        if course is None:
            return await self.refuse(wire.CLOSE_FORBIDDEN, NOT_INSTRUCTOR)
        self.group = course_group(course.pk)
        try:
            self.staying = await group_join(self.channel_layer, self.group, self.channel_name)
        except outage_errors() as e:
            return await self.refuse_unavailable(e)
        self.checked_at = time.monotonic()
        await self.accept()
        snapshot = await db_sync_to_async(course_snapshot)(course)
        self.summary_at = read_time(snapshot["summary"]["at"])
        await self.send_json({"type": "snapshot", **snapshot})

    @staticmethod
    def _managed_course(user, course_id) -> Course | None:
        course = Course.objects.filter(pk=course_id).first()
        if course is None or not course_is_managed_by(course=course, user=user):
            return None
        return course

    SIGNED_OUT = wire.CLOSE_UNAUTHENTICATED, NOT_SIGNED_IN + "sign in again to see the live view"

    @classmethod
    def refusals_now(cls, consumers, users):
        # the connect check's selector, on the course's id alone (one query fewer); an
        # instructor has a few live views open, not hundreds
        return [
            None
            if course_is_managed_by(course=Course(pk=c.course_id), user=u)
            else (wire.CLOSE_FORBIDDEN, NOT_INSTRUCTOR)
            for c, u in zip(consumers, users, strict=True)
        ]

    async def disconnect(self, code):
        await self.leave()

    async def course_summary(self, event):
        # workers push summaries concurrently: one made before the last one sent is stale
        at = read_time(event["payload"]["summary"]["at"])
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
