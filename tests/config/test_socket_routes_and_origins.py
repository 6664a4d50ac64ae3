"""WebSocket handshakes through a real server (the ``websockets`` client over TCP): unknown
paths get a clean 4404 refusal, and only a page of the server's own origin (scheme, host and
port) or a CSRF_TRUSTED_ORIGINS entry may open a socket with the user's cookie."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from channels.db import database_sync_to_async
from websockets.asyncio.client import connect as ws_connect

from config.origins import origin_allowed, parse_origin
from tests.emotion.test_socket_refusals import _login_cookie, until_closed
from tests.factories import UserFactory
from tests.servers import serve

TRUSTED = "https://localhost:8443"  # a loopback name: the settings stay in local mode


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory):
    data = tmp_path_factory.mktemp("origins-server")
    with serve(data, CSRF_TRUSTED_ORIGINS=TRUSTED) as url:
        yield url, data / "server.log"


async def _open(base: str, path: str, origin: str | None, cookie: str | None = None):
    headers = {}
    if origin is not None:
        headers["Origin"] = origin
    if cookie is not None:
        headers["Cookie"] = cookie
    url = base.replace("http://", "ws://") + path
    return await ws_connect(url, additional_headers=headers, open_timeout=10)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/ws/nope/", "/ws/sessions/abc/stream/", "/ws/", "/"])
async def test_an_unknown_socket_path_is_a_clean_4404(server, path):
    base, log = server
    ws = await _open(base, path, origin=base)
    msgs, code, _ = await until_closed(ws)
    assert code == 4404
    assert msgs == [{"type": "closed", "code": 4404, "reason": "no such socket"}]
    await asyncio.sleep(0.3)  # let the server write its log
    text = log.read_text()
    assert "Traceback" not in text and "ERROR" not in text, text[-2000:]


@pytest.mark.django_db(transaction=True)
async def test_only_the_servers_own_origin_or_a_trusted_one_may_open_a_socket(server):
    base, _ = server
    port = base.rsplit(":", 1)[1]
    await database_sync_to_async(UserFactory)(username="ana")
    cookie = await asyncio.to_thread(_login_cookie, base, "ana")
    for origin in (base, TRUSTED, TRUSTED.upper()):
        ws = await _open(base, "/ws/notifications/", origin, cookie)
        await ws.send('{"type": "ping"}')  # open: the push-only socket answers
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "error", origin
        await ws.close()
    foreign = [
        "http://127.0.0.1:9999",  # another port
        f"https://127.0.0.1:{port}",  # another scheme
        "https://127.0.0.1",
        "http://localhost:9999",
        f"http://localhost:{port}",  # another host name for the same address
        "https://localhost:9443",
        "http://localhost:8443",
        "https://localhost",
        "null",
        None,  # no Origin: refused, as before (ALLOWED_HOSTS has no "*")
    ]
    for origin in foreign:
        with pytest.raises(websockets.InvalidStatus) as e:
            await _open(base, "/ws/notifications/", origin, cookie)
        assert e.value.response.status_code == 403, origin


def _scope(origin, host="127.0.0.1:8000", scheme="ws", **headers):
    h = [(b"host", host.encode())]
    if origin is not None:
        h.append((b"origin", origin.encode()))
    h += [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return {"type": "websocket", "scheme": scheme, "headers": h}


def test_the_origin_rule(settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1", "school.example"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://school.example"]
    settings.TRUST_X_FORWARDED_PROTO = False
    assert origin_allowed(_scope("http://127.0.0.1:8000"))
    assert origin_allowed(_scope("HTTP://127.0.0.1:8000/"))
    assert not origin_allowed(_scope("http://127.0.0.1:8001"))
    assert not origin_allowed(_scope("https://127.0.0.1:8000"))
    assert origin_allowed(_scope("https://127.0.0.1:8000", scheme="wss"))
    assert not origin_allowed(_scope("http://127.0.0.1:8000", scheme="wss"))
    # a Host that ALLOWED_HOSTS does not name (DNS rebinding) is no origin of this server
    assert not origin_allowed(_scope("http://evil.example:8000", host="evil.example:8000"))
    # behind a TLS proxy: its X-Forwarded-Proto counts only when trusted
    proxied = dict(host="school.example", x_forwarded_proto="https")
    assert origin_allowed(_scope("https://school.example", **proxied))  # a trusted origin
    settings.CSRF_TRUSTED_ORIGINS = []
    assert not origin_allowed(_scope("https://school.example", **proxied))
    settings.TRUST_X_FORWARDED_PROTO = True
    assert origin_allowed(_scope("https://school.example", **proxied))
    assert not origin_allowed(_scope("http://school.example", **proxied))
    assert not origin_allowed(_scope(None))
    settings.ALLOWED_HOSTS = ["*"]
    assert origin_allowed(_scope(None))  # no Origin header: a script, allowed only with "*"
    assert not origin_allowed(_scope("http://elsewhere.example"))
    assert parse_origin("http://[::1]:8000") == ("http", "::1", 8000)
    for bad in ("null", "ftp://x", "http://x/path", "http://x:99999", "http://u@x", ""):
        assert parse_origin(bad) is None, bad
