"""``SERVER_WORKERS``: several server processes on one port (``config.serve``), stopped together
on SIGTERM, and all of them when one dies."""

import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from tests.servers import server_process


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        out += [int(c) for c in task.read_text().split()]
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _serving_children(pid: int, n: int) -> list[int]:
    deadline = time.monotonic() + 30
    while len(kids := _children(pid)) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    return kids


@pytest.mark.django_db(transaction=True)
def test_two_processes_serve_one_port_and_stop_together(tmp_path):
    with server_process(tmp_path, SERVER_WORKERS="2") as (url, proc):
        kids = _serving_children(proc.pid, 2)
        assert len(kids) == 2
        for _ in range(10):  # new connections each: the kernel spreads them over both
            assert urllib.request.urlopen(f"{url}/accounts/login/", timeout=10).status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert not any(_alive(k) for k in kids)


@pytest.mark.django_db(transaction=True)
def test_when_one_process_dies_the_others_stop_and_the_server_exits_with_an_error(tmp_path):
    with server_process(tmp_path, SERVER_WORKERS="2") as (_, proc):
        kids = _serving_children(proc.pid, 2)
        assert len(kids) == 2
        os.kill(kids[0], signal.SIGKILL)
        assert proc.wait(30) != 0
    assert not any(_alive(k) for k in kids)
