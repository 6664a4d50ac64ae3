"""Request bodies are refused before they are buffered or parsed (config.bodylimit behind
config.serve): an anonymous 100 MB body, declared or chunked, costs the server no memory and
gets a 413 in the API's error shape. Under daphne the same multipart POST grew the server by
over a gigabyte before any view ran."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.servers import server_process

pytestmark = pytest.mark.django_db(transaction=True)

BIG = 100 * 1024 * 1024
CHUNK = b"x" * (1024 * 1024)
BOUNDARY = "b0undary"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _multipart_head() -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="frames"; filename="a.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()


def post_big(base: str, path: str, *, chunked: bool, cookie: str = "") -> tuple[int, dict]:
    """POST a 100 MB multipart body as fast as the server reads it; (status, JSON body) of
    whatever the server answers. The body is sent from a thread while the answer is read, as a
    client that does not wait would."""
    u = urlsplit(base)
    sock = socket.create_connection((u.hostname, u.port), timeout=30)
    head = [f"POST {path} HTTP/1.1", f"Host: {u.hostname}", f"Origin: {base}"]
    head.append(f"Content-Type: multipart/form-data; boundary={BOUNDARY}")
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {BIG}")
    if cookie:
        head.append(f"Cookie: {cookie}")
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())

    def send_body():
        try:
            first = _multipart_head()
            for i in range(BIG // len(CHUNK)):
                data = first + CHUNK if i == 0 else CHUNK
                sock.sendall(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed: what is being tested

    sender = threading.Thread(target=send_body, daemon=True)
    sender.start()
    raw = b""
    try:
        while b"\r\n\r\n" not in raw or len(raw.split(b"\r\n\r\n", 1)[1]) < _length(raw):
            part = sock.recv(65536)
            if not part:
                break
            raw += part
    finally:
        sock.close()
        sender.join(30)
    status = int(raw.split(b" ", 2)[1])
    return status, json.loads(raw.split(b"\r\n\r\n", 1)[1])


def _length(raw: bytes) -> int:
    for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock(), server_process(tmp_path_factory.mktemp("limits")) as s:
        yield s


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    "path", ["/api/auth/token/", "/accounts/login/", "/api/sessions/1/frames/"]
)
def test_a_100_mb_anonymous_body_is_refused_before_it_is_read(server, path, chunked):
    base, proc = server
    before = rss_bytes(proc.pid)
    status, body = post_big(base, path, chunked=chunked)
    grown = rss_bytes(proc.pid) - before
    assert status == 413
    assert body["error"]["code"] == "request_too_large"
    assert body["error"]["details"] == {"limit": 1024 * 1024}
    assert grown < 50 * 1024 * 1024, f"the server grew by {grown / 2**20:.0f} MB"


def test_a_frame_upload_with_credentials_may_send_the_upload_limit_and_no_more(server, settings):
    """Only a request that carries a session cookie or a token gets the frame upload's large
    limit (checked by the view after); over it, 413 before the body is parsed."""
    base, proc = server
    before = rss_bytes(proc.pid)
    status, body = post_big(base, "/api/sessions/1/frames/", chunked=True, cookie="sessionid=x")
    assert status == 413
    assert body["error"]["details"] == {"limit": settings.EMOTION_LIMITS["max_request_bytes"]}
    assert rss_bytes(proc.pid) - before < 50 * 1024 * 1024
    status, body = post_big(base, "/api/sessions/1/frames/", chunked=False, cookie="sessionid=x")
    assert status == 413 and body["error"]["code"] == "request_too_large"


def test_small_bodies_still_reach_the_views(server):
    """Under the limit the request is Django's: a bad login is the API's 400, not a 413."""
    base, _ = server
    u = urlsplit(base)
    payload = json.dumps({"username": "nobody", "password": "wrong"}).encode()
    with socket.create_connection((u.hostname, u.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/auth/token/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(payload), payload)
        )
        raw = b""
        while part := sock.recv(65536):
            raw += part
    assert int(raw.split(b" ", 2)[1]) == 400, raw[:300]
