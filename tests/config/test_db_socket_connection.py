"""The sockets' database thread keeps its connection (``config.db``): calls reuse one backend
instead of connecting for each, and a connection the database dropped is replaced."""

import asyncio
import threading

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
    """``fn()`` called as a consumer calls it, on one of the sockets' threads (which outlive
    the loop)."""
    return asyncio.run(db_sync_to_async(fn)())


def _pids(n: int) -> list[int]:
    """The backend of each of ``n`` calls; then the threads' connections are closed, leaving
    no backend behind the test."""
    out = [_in_sockets_thread(_backend_pid) for _ in range(n)]
    _close_all()
    return out


def _close_all() -> None:
    """Close the connection of every one of the sockets' threads (each runs one close)."""
    pool = config.db._executor()
    barrier = threading.Barrier(pool._max_workers)

    def close():
        barrier.wait(10)
        connection.close()

    for f in [pool.submit(close) for _ in range(pool._max_workers)]:
        f.result()


@pytest.fixture
def one_thread(settings, monkeypatch):
    """The sockets' calls on a pool of one thread (this test's): the next call is sure to
    find the connection the last one kept."""
    settings.SOCKET_DB_THREADS = 1
    monkeypatch.setattr(config.db, "_pool", None)
    yield
    _close_all()
    config.db._pool.shutdown()


@pytest.mark.django_db(transaction=True)
def test_calls_reuse_one_connection_only_while_kept(settings):
    require_service("PostgreSQL", connection.vendor == "postgresql", "it reads backend ids")
    settings.SOCKET_DB_CONN_MAX_AGE = 60
    kept = _pids(12)
    assert len(set(kept)) <= settings.SOCKET_DB_THREADS < 12  # one per thread at most
    assert _backend_pid() not in kept  # the sockets' threads, not the test's
    settings.SOCKET_DB_CONN_MAX_AGE = 0
    assert len(set(_pids(12))) == 12  # Django's way: a connection per call


def _kill(pid: int) -> None:
    with connection.cursor() as cur:  # the test's own connection ends the kept one
        cur.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.mark.django_db(transaction=True)
def test_a_kept_connection_the_database_dropped_is_replaced_after_a_pause(
    settings, monkeypatch, one_thread
):
    require_service("PostgreSQL", connection.vendor == "postgresql", "it ends a backend")
    settings.SOCKET_DB_CONN_MAX_AGE = 60
    monkeypatch.setattr(config.db, "HEALTH_CHECK_IDLE_S", 0.0)  # any pause is one
    first = _in_sockets_thread(_backend_pid)
    _kill(first)
    second = _in_sockets_thread(_backend_pid)
    _close_all()
    assert second != first


@pytest.mark.django_db(transaction=True)
def test_without_a_pause_only_the_call_that_found_it_dropped_fails(
    settings, monkeypatch, one_thread
):
    require_service("PostgreSQL", connection.vendor == "postgresql", "it ends a backend")
    settings.SOCKET_DB_CONN_MAX_AGE = 60
    monkeypatch.setattr(config.db, "HEALTH_CHECK_IDLE_S", 3600.0)
    first = _in_sockets_thread(_backend_pid)
    _kill(first)
    with pytest.raises((OperationalError, InterfaceError)):
        _in_sockets_thread(_backend_pid)
    second = _in_sockets_thread(_backend_pid)
    _close_all()
    assert second != first
