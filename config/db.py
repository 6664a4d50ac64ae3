"""Database calls from async code (WebSocket consumers, the frame batcher) that keep their
connection.

Channels' ``database_sync_to_async`` closes the thread's connection after every call unless
``CONN_MAX_AGE`` says otherwise, and the web server keeps that at 0 (``config.settings``: a
request's thread is new each time). But every consumer's calls ran in asgiref's one shared
sync thread: each connected anew (a new PostgreSQL backend, many times a small query's cost),
one call after another on that one thread, which bounded how many sockets a process could
serve. Here calls run on a small pool of threads of their own, each keeping its connection for
``SOCKET_DB_CONN_MAX_AGE`` seconds, checked before reuse after a pause
(``CONN_HEALTH_CHECKS``) and closed after an error, as Django does between requests.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import SyncToAsync
from django.conf import settings
from django.db import connections

#: a kept connection idle longer than this is checked (a query) before it is used again; one
#: in use a moment ago is not: under load that check was a round trip more for every call
HEALTH_CHECK_IDLE_S = 1.0


def _keep_or_close() -> None:
    max_age = settings.SOCKET_DB_CONN_MAX_AGE
    for conn in connections.all(initialized_only=True):
        raw, now = conn.connection, time.monotonic()
        if raw is not None and max_age > 0 and getattr(conn, "kept_raw", None) is not raw:
            # a connection opened by this thread's last call: its age counts from now on
            conn.kept_raw = raw
            conn.close_at = now + max_age
        conn.close_if_unusable_or_obsolete()  # closed after an error it cannot recover from
        if max_age > 0 and now - getattr(conn, "kept_used_at", float("-inf")) < HEALTH_CHECK_IDLE_S:
            conn.health_check_done = True
        conn.kept_used_at = now


class _KeptConnectionSyncToAsync(SyncToAsync):
    def thread_handler(self, loop, *args, **kwargs):
        _keep_or_close()
        try:
            return super().thread_handler(loop, *args, **kwargs)
        finally:
            _keep_or_close()


_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(settings.SOCKET_DB_THREADS, thread_name_prefix="socket-db")
    return _pool


def db_sync_to_async(func):
    """``database_sync_to_async`` for the sockets (module docstring), as a call or decorator.

    Calls run on ``SOCKET_DB_THREADS`` threads, each keeping its connection: a call mostly
    waits for the database, so while one socket's batch waits, another's recheck runs. Each
    socket still makes its calls one after another (a consumer handles one message at a
    time), so its own order holds."""
    return _KeptConnectionSyncToAsync(func, thread_sensitive=False, executor=_executor())
