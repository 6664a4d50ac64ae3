"""A quiet live view stays open on channels-redis (issue 20, item 9): redis-py gives up a read
after its socket timeout, which must outlast channels-redis's blocking wait for a message."""

import asyncio
import json

import pytest
from channels_redis.core import RedisChannelLayer
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from config.redis_clients import channel_layers
from tests.conftest import redis_layers
from tests.servers import serve
from tests.services import test_redis_url

QUIET_SECONDS = 20


def session_cookie(user) -> str:
    s = SessionStore()
    s[SESSION_KEY] = str(user.pk)
    s[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    s[HASH_SESSION_KEY] = user.get_session_auth_hash()
    s.create()
    return f"sessionid={s.session_key}"


@pytest.mark.redis
def test_the_channel_layer_reads_longer_than_channels_redis_waits():
    """Settings and the tests' layer are the same, and its reads outlast the blocking pop."""
    url = test_redis_url()
    assert redis_layers(url) == channel_layers(url)
    assert channel_layers(url) == settings.CHANNEL_LAYERS  # the `redis` mark's wiring
    (host,) = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
    assert host["address"] == url
    assert host["socket_timeout"] >= RedisChannelLayer.brpop_timeout + 5
    assert host["socket_keepalive"] is True


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_quiet_live_view_stays_open_through_the_server(classroom, tmp_path):
    cookie = session_cookie(classroom.instructor)
    # the same key: the session cookie carries a hash made with it
    with serve(tmp_path, REDIS_URL=test_redis_url(), SECRET_KEY=settings.SECRET_KEY) as base:
        url = base.replace("http://", "ws://") + f"/ws/courses/{classroom.course.pk}/live/"

        async def watch() -> list:
            closes = []
            async with ws_connect(
                url, additional_headers={"Origin": base, "Cookie": cookie}, open_timeout=10
            ) as ws:
                assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "snapshot"
                try:
                    msg = await asyncio.wait_for(ws.recv(), QUIET_SECONDS)
                    pytest.fail(f"a quiet course sent {msg!r}")
                except TimeoutError:
                    pass
                except ConnectionClosed as e:
                    closes.append(e.rcvd.code if e.rcvd else None)
            return closes

        closes = asyncio.run(watch())
        log = (tmp_path / "server.log").read_text()
    assert closes == [], f"closed with {closes} within {QUIET_SECONDS} s: {log[-2000:]}"
    assert "TimeoutError" not in log
