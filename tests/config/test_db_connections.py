"""The web server does not pile up idle PostgreSQL connections: under daphne each request's
sync code runs in a thread of its own, so a persistent connection (CONN_MAX_AGE > 0) is never
reused and stays open until it expires. With the defaults, concurrent requests leave none."""

import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from tests.browser.conftest import _free_port
from tests.conftest import ROOT, _test_database_url


def _connections(application_name: str) -> int:
    """The server's own backends (other tests' servers and workers may use the database)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            [application_name],
        )
        return cur.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_daphne_with_default_settings_leaves_no_idle_database_connections(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("counts PostgreSQL backends")
    port = _free_port()
    name = f"conn-test-{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DB_CONN_MAX_AGE")}
    url = _test_database_url()
    env.update(DATABASE_URL=f"{url}{'&' if '?' in url else '?'}application_name={name}")
    env.update(DATA_DIR=str(tmp_path), SECRET_KEY="x", ALLOWED_HOSTS="127.0.0.1")
    args = ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
    log = (tmp_path / "daphne.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "daphne.log"
                ).read_text()[-3000:]
                time.sleep(0.3)
        with ThreadPoolExecutor(10) as pool:
            for _ in range(3):
                codes = list(
                    pool.map(lambda _: urllib.request.urlopen(url, timeout=30).status, range(10))
                )
                assert codes == [200] * 10
        time.sleep(1)
        assert _connections(name) == 0  # with DB_CONN_MAX_AGE=60: 11 here
    finally:
        proc.terminate()
        proc.wait(15)
