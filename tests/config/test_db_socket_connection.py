"""The sockets' database thread keeps its connection (``config.db``): calls reuse one backend
instead of connecting for each, and a connection the database dropped is replaced."""

import asyncio

import pytest
from django.db import InterfaceError, OperationalError, connection

import config.db
from config.db import db_sync_to_async
from tests.services import require_service


def _backend_pid() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return cur.fetchone()[0]


def _in_sockets_thread(fn):
    """``fn()`` called as a consumer calls it: from an event loop with no sync context of its
    own, so in asgiref's one shared sync thread (which outlives the loop)."""
    return asyncio.run(db_sync_to_async(fn)())


def _pids(n: int) -> list[int]:
    """The backend of each of ``n`` calls; then the thread's connection is closed, leaving no
    backend behind the test."""
    out = [_in_sockets_thread(_backend_pid) for _ in range(n)]
    _in_sockets_thread(lambda: connection.close())
    return out


@pytest.mark.django_db(transaction=True)
def test_calls_reuse_one_connection_only_while_kept(settings):
    require_service("PostgreSQL", connection.vendor == "postgresql", "it reads backend ids")
    settings.SOCKET_DB_CONN_MAX_AGE = 60
    kept = _pids(3)
    assert len(set(kept)) == 1
    assert kept[0] != _backend_pid()  # the sockets' thread, not the test's
    settings.SOCKET_DB_CONN_MAX_AGE = 0
    assert len(set(_pids(3))) == 3  # Django's way: a connection per call


def _kill(pid: int) -> None:
    with connection.cursor() as cur:  # the test's own connection ends the kept one
        cur.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.mark.django_db(transaction=True)
def test_a_kept_connection_the_database_dropped_is_replaced_after_a_pause(settings, monkeypatch):
    require_service("PostgreSQL", connection.vendor == "postgresql", "it ends a backend")
    settings.SOCKET_DB_CONN_MAX_AGE = 60
    monkeypatch.setattr(config.db, "HEALTH_CHECK_IDLE_S", 0.0)  # any pause is one
    first = _in_sockets_thread(_backend_pid)
    _kill(first)
    second = _in_sockets_thread(_backend_pid)
    _in_sockets_thread(lambda: connection.close())
    assert second != first


@pytest.mark.django_db(transaction=True)
def test_without_a_pause_only_the_call_that_found_it_dropped_fails(settings, monkeypatch):
    require_service("PostgreSQL", connection.vendor == "postgresql", "it ends a backend")
    settings.SOCKET_DB_CONN_MAX_AGE = 60
    monkeypatch.setattr(config.db, "HEALTH_CHECK_IDLE_S", 3600.0)
    first = _in_sockets_thread(_backend_pid)
    _kill(first)
    with pytest.raises((OperationalError, InterfaceError)):
        _in_sockets_thread(_backend_pid)
    second = _in_sockets_thread(_backend_pid)
    _in_sockets_thread(lambda: connection.close())
    assert second != first
