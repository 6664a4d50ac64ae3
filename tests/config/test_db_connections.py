"""The web server does not pile up idle PostgreSQL connections: under ASGI each request's
sync code runs in a thread of its own, so a persistent connection (CONN_MAX_AGE > 0) is never
reused and stays open until it expires. With the defaults, concurrent requests leave none."""

import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from tests.conftest import _test_database_url
from tests.servers import serve
from tests.services import require_service


def _connections(application_name: str) -> int:
    """The server's own backends (other tests' servers and workers may use the database)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            [application_name],
        )
        return cur.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_server_with_default_settings_leaves_no_idle_database_connections(tmp_path):
    require_service("PostgreSQL", connection.vendor == "postgresql", "it counts its backends")
    name = f"conn-test-{uuid.uuid4().hex[:12]}"
    db = _test_database_url()
    db = f"{db}{'&' if '?' in db else '?'}application_name={name}"
    with serve(tmp_path, DATABASE_URL=db) as base:
        url = f"{base}/healthz"
        with ThreadPoolExecutor(10) as pool:
            for _ in range(3):
                codes = list(
                    pool.map(lambda _: urllib.request.urlopen(url, timeout=30).status, range(10))
                )
                assert codes == [200] * 10
        time.sleep(1)
        assert _connections(name) == 0  # with DB_CONN_MAX_AGE=60: 11 here
