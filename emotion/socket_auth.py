"""Sockets that check, again while they live, that their user may still have them."""

from __future__ import annotations

import json
import logging
import time
from importlib import import_module

from channels.consumer import get_handler_name
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
from django.utils.crypto import constant_time_compare

from config.api import outage_errors
from config.db import db_sync_to_async
from emotion.stream_protocol import CLOSE_TRY_AGAIN, closed
from tutoring.models import User

logger = logging.getLogger(__name__)

# While a socket lives, whether its user may still have it (account active, still signed in
# with this browser session, still the course's instructor or the session's learner) is
# checked again at the first message either way after this many seconds: the check at connect
# alone let a socket outlive all three for as long as the server keeps it (up to a day). A check
# is three small queries (1.7 ms, p95 5.8 ms, on a busy 2-core machine) in the sync thread
# that also takes every learner's frames; a live-view message costs 0.2-0.3 ms to pass on
# without it and 4-4.8 ms with it. So not on every message: once every 5 s is < 1 ms/s a
# socket, and a user who lost access gets at most 5 s more.
RECHECK_SECONDS = 5.0


def signed_in_user(scope) -> User | None:
    """The scope's user as the database has it now, or None when that sign-in no longer holds:
    the account was deactivated or deleted, or (session cookie) the session was signed out,
    flushed or expired, now belongs to someone else, or the password changed since.

    Sync (database): call it through ``db_sync_to_async``. Read-only, unlike
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


class AuthRecheckMixin:
    """For an ``AsyncWebsocketConsumer`` whose user's access is checked again while it lives
    (``still_allowed``, at most every ``RECHECK_SECONDS``) and which is closed, told why, when
    it is lost. Also what goes with closing from the server's side: JSON messages, refusals a
    browser can read, leaving the socket's group first."""

    #: set once the socket is being closed by the server: nothing more is sent on it
    shut: bool = False
    checked_at: float = 0.0

    def refusal_now(self) -> tuple[int, str] | None:
        """(close code, reason) if this socket's user may no longer have it, else None. Sync
        (database); each consumer says what its connect check required."""
        raise NotImplementedError

    async def dispatch(self, message):
        """Channels' dispatch without its ``close_old_connections`` before every message: that
        is a hop to the one sync thread that every socket's database work shares, so each
        frame waited there behind other sockets' batches before it was even read. Every
        database call here goes through ``db_sync_to_async``, which does that housekeeping
        around the call itself."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def still_allowed(self) -> bool:
        """Whether this socket may go on; when not, it is closed (told why) and False.

        Checked at most every RECHECK_SECONDS: call it before sending anything the user
        might no longer be allowed to see, and before taking anything from them."""
        if self.shut:
            return False
        if time.monotonic() - self.checked_at < RECHECK_SECONDS:
            return True
        refusal = await db_sync_to_async(self.refusal_now)()
        self.checked_at = time.monotonic()
        if refusal is None:
            return True
        await self.shut_with(*refusal)
        return False

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
        await self.send_json(closed(code, reason))
        await self.close(code=code)

    async def shut_with(self, code: int, reason: str) -> None:
        """Close from the server's side: leave the group first, so nothing more is sent."""
        if self.shut:
            return
        self.shut = True
        await self.leave()
        await self.close_with(code, reason)

    async def leave(self) -> None:
        if hasattr(self, "staying"):  # config.broadcast.group_join
            self.staying.cancel()
        if hasattr(self, "group"):
            try:
                await self.channel_layer.group_discard(self.group, self.channel_name)
            except outage_errors():
                pass  # Redis away: the membership expires with the layer's group_expiry
