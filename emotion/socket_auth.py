"""Sockets that check, again while they live, that their user may still have them."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from importlib import import_module

from channels.consumer import get_handler_name
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
from django.contrib.sessions.models import Session
from django.utils import timezone
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


def signed_in_users(scopes: list) -> list[User | None]:
    """Each scope's user as the database has it now, or None when that sign-in no longer
    holds: the account was deactivated or deleted, or (session cookie) the session was signed
    out, flushed or expired, now belongs to someone else, or the password changed since.

    Two queries for all (their browser sessions, their users) with the default session and
    auth backends; other backends are asked one by one. Sync (database): call it through
    ``db_sync_to_async``. Read-only, unlike ``django.contrib.auth.get_user``, which flushes or
    cycles the session it checks."""
    claims = [_claim(scope) for scope in scopes]
    keys = {c[2] for c in claims if c is not None and c[2]}
    sessions = _session_data(keys)
    wanted: dict[str, set] = {}
    for claim in claims:
        if claim is not None:
            backend, pk = _claimed_user(claim, sessions)
            if backend is not None:
                wanted.setdefault(backend, set()).add(pk)
    fresh = {(b, pk): u for b, pks in wanted.items() for pk, u in _users(b, pks).items()}
    out = []
    for claim in claims:
        backend, pk = (None, None) if claim is None else _claimed_user(claim, sessions)
        user = fresh.get((backend, pk))
        ok = user is not None and user.is_active and _hash_holds(claim, sessions, user)
        out.append(user if ok else None)
    return out


# (the scope's user's pk, that pk as a session stores it, its browser session's key or ""
# when not cookie auth)
Claim = tuple[object, str, str]
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
DB_SESSIONS = "django.contrib.sessions.backends.db"


def _claim(scope) -> Claim | None:
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        return None
    session = scope.get("session")
    key = getattr(session, "session_key", None) if session is not None else None
    return user.pk, user._meta.pk.value_to_string(user), key or ""


def _claimed_user(claim: Claim, sessions: dict) -> tuple[str | None, object]:
    """(how to load the claim's user: an auth backend's path, its pk); (None, None) when the
    browser session no longer says this user signed in with an allowed backend."""
    pk, pk_text, key = claim
    if not key:  # not cookie auth (a scope made with its user): the account alone
        return MODEL_BACKEND, pk
    data = sessions.get(key, {})
    backend_path = data.get(BACKEND_SESSION_KEY)
    if data.get(SESSION_KEY) != pk_text or backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None, None
    return backend_path, pk


def _session_data(keys: set[str]) -> dict[str, dict]:
    """Each unexpired browser session's data, fresh (not cached), by key."""
    engine = import_module(settings.SESSION_ENGINE)
    if settings.SESSION_ENGINE != DB_SESSIONS:
        return {key: engine.SessionStore(key).load() for key in keys}
    rows = Session.objects.filter(session_key__in=keys, expire_date__gt=timezone.now())
    store = engine.SessionStore()
    return {row.session_key: store.decode(row.session_data) for row in rows}


def _users(backend_path: str, pks: set) -> dict:
    if backend_path == MODEL_BACKEND:
        return User._default_manager.in_bulk(pks)
    backend = load_backend(backend_path)
    return {pk: u for pk in pks if (u := backend.get_user(pk)) is not None}


def _hash_holds(claim: Claim, sessions: dict, user: User) -> bool:
    """Whether the browser session was signed in with the user's current password."""
    if not claim[2]:
        return True
    session_hash = sessions.get(claim[2], {}).get(HASH_SESSION_KEY) or ""
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    return any(constant_time_compare(session_hash, h) for h in hashes)


class Rechecks:
    """One event loop's due socket rechecks, made together: while one set is being checked
    (a few queries on a database thread), the sockets that come due wait and go in the next.
    At hundreds of sockets a second that is a few sets a second instead of three queries for
    each, and with a few sockets it adds no wait."""

    def __init__(self) -> None:
        self.waiting: list[tuple[AuthRecheckMixin, asyncio.Future]] = []
        self.draining = False
        self.drain: asyncio.Task | None = None

    async def refusal(self, consumer: AuthRecheckMixin) -> tuple[int, str] | None:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((consumer, future))
        if not self.draining:
            self.draining = True
            self.drain = asyncio.ensure_future(self._drain())  # the loop keeps tasks weakly
        return await future

    async def _drain(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting, []
                try:
                    found = await db_sync_to_async(access_refusals)([c for c, _ in batch])
                except Exception as e:  # the database away: each socket's check raises it
                    found = [e] * len(batch)
                for (_, future), refusal in zip(batch, found, strict=True):
                    if future.done():  # its socket was cancelled meanwhile
                        continue
                    if isinstance(refusal, Exception):
                        future.set_exception(refusal)
                    else:
                        future.set_result(refusal)
        finally:
            self.draining = False


_rechecks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def rechecks() -> Rechecks:
    """The running event loop's ``Rechecks`` (a server process has one loop; tests many)."""
    loop = asyncio.get_running_loop()
    if loop not in _rechecks:
        _rechecks[loop] = Rechecks()
    return _rechecks[loop]


def access_refusals(consumers: list) -> list[tuple[int, str] | None]:
    """Each socket's refusal now, or None: whose sign-in no longer holds gets its class's
    ``SIGNED_OUT``, the rest what their class's ``refusals_now`` says. Sync (database)."""
    users = signed_in_users([c.scope for c in consumers])
    out: list = [None] * len(consumers)
    by_class: dict[type, list[int]] = {}
    for i, (consumer, user) in enumerate(zip(consumers, users, strict=True)):
        if user is None:
            out[i] = consumer.SIGNED_OUT
        else:
            by_class.setdefault(type(consumer), []).append(i)
    for cls, idx in by_class.items():
        found = cls.refusals_now([consumers[i] for i in idx], [users[i] for i in idx])
        for i, refusal in zip(idx, found, strict=True):
            out[i] = refusal
    return out


class AuthRecheckMixin:
    """For an ``AsyncWebsocketConsumer`` whose user's access is checked again while it lives
    (``still_allowed``, at most every ``RECHECK_SECONDS``) and which is closed, told why, when
    it is lost. Also what goes with closing from the server's side: JSON messages, refusals a
    browser can read, leaving the socket's group first."""

    #: set once the socket is being closed by the server: nothing more is sent on it
    shut: bool = False
    checked_at: float = 0.0
    #: (close code, reason) for a socket whose user's sign-in no longer holds
    SIGNED_OUT: tuple[int, str]

    @classmethod
    def refusals_now(cls, consumers: list, users: list) -> list[tuple[int, str] | None]:
        """For sockets of this class whose users (as the database has them now) are still
        signed in: each one's (close code, reason) if the user may no longer have it, else
        None. Sync (database); each consumer says what its connect check required."""
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
        refusal = await rechecks().refusal(self)
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
