"""The product's server (``python -m config.serve``) on the test database, for tests that need
a real one (browsers, CSP, database connections, body limits, shutdown)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from config.serve import server_argv
from tests.conftest import ROOT, _test_database_url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(data_dir: Path, **env: str) -> Iterator[str]:
    """Serve the product (embedded channel layer and tasks, default settings otherwise; ``env``
    overrides) until the block ends; yields its base URL once the login page answers."""
    with server_process(data_dir, **env) as (url, _):
        yield url


@contextmanager
def server_process(data_dir: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """:func:`serve`, yielding the server's process too (its memory, signals)."""
    port = free_port()
    (data_dir / "static").mkdir(parents=True, exist_ok=True)
    skip = ("REDIS_URL", "DB_CONN_MAX_AGE")  # scripts/test.sh sets them for the test process
    full = {k: v for k, v in os.environ.items() if k not in skip}
    full.update(
        DATABASE_URL=_test_database_url(),
        DATA_DIR=str(data_dir),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECRET_KEY="tests",
        PYTHONUNBUFFERED="1",
    )
    full.update(env)
    log_path = data_dir / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            server_argv("127.0.0.1", port), cwd=ROOT, env=full, stdout=log, stderr=subprocess.STDOUT
        )
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/accounts/login/", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(log_path.read_text()[-3000:]) from None
                time.sleep(0.3)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
