"""Channels over channels-redis: a socket joined to a group receives what sync code sends."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from config.asgi import application
from config.broadcast import group_send
from config.consumers import user_group
from tests.factories import UserFactory


def session_headers(user=None, origin=b"http://localhost"):
    headers = [(b"origin", origin), (b"host", b"localhost")]
    if user is not None:
        client = Client()
        client.force_login(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return headers


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_group_message_from_sync_helper_reaches_socket_over_redis(settings):
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"].startswith("channels_redis")
    user = await database_sync_to_async(UserFactory)()
    headers = await database_sync_to_async(session_headers)(user)
    comm = WebsocketCommunicator(application, "/ws/notifications/", headers=headers)
    connected, _ = await comm.connect()
    assert connected
    sent = await sync_to_async(group_send)(user_group(user.pk), "notify", {"hello": "world"})
    assert sent is True
    msg = await comm.receive_json_from(timeout=5)
    assert msg == {"type": "notify", "payload": {"hello": "world"}}
    # another user's group does not reach this socket
    await sync_to_async(group_send)(user_group(user.pk + 1000), "notify", {"x": 1})
    assert await comm.receive_nothing(timeout=0.5)
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_anonymous_socket_is_refused():
    comm = WebsocketCommunicator(application, "/ws/notifications/", headers=session_headers())
    connected, _ = await comm.connect()
    assert connected  # accepted only to tell the browser why, then closed
    assert await comm.receive_json_from() == {
        "type": "closed",
        "code": 4401,
        "reason": "sign in first",
    }
    assert await comm.receive_output() == {"type": "websocket.close", "code": 4401}


@pytest.mark.django_db(transaction=True)
async def test_foreign_origin_is_refused():
    user = await database_sync_to_async(UserFactory)()
    headers = await database_sync_to_async(session_headers)(user, origin=b"http://evil.example")
    comm = WebsocketCommunicator(application, "/ws/notifications/", headers=headers)
    connected, _ = await comm.connect()
    assert not connected


def test_group_send_reports_failure_instead_of_raising(settings):
    from tests.conftest import redis_layers

    settings.CHANNEL_LAYERS = redis_layers("redis://127.0.0.1:1/0")
    assert asyncio.get_event_loop_policy()  # sync context: helper must not raise
    assert group_send("user-1", "notify", {"x": 1}) is False


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_several_messages_go_in_one_pass_and_one_failure_does_not_stop_the_rest(
    settings, monkeypatch
):
    from channels.layers import get_channel_layer

    from config.broadcast import group_send_many

    user = await database_sync_to_async(UserFactory)()
    headers = await database_sync_to_async(session_headers)(user)
    comm = WebsocketCommunicator(application, "/ws/notifications/", headers=headers)
    assert (await comm.connect())[0]
    layer = get_channel_layer()
    real = layer.group_send

    async def flaky(group, message):
        if group == "broken":
            raise ConnectionError("lost")
        return await real(group, message)

    monkeypatch.setattr(layer, "group_send", flaky)
    messages = [
        (user_group(user.pk), "notify", {"n": 1}),
        ("broken", "notify", {"n": 2}),
        (user_group(user.pk), "notify", {"n": 3}),
    ]
    assert await sync_to_async(group_send_many)(messages) == 2
    got = [await comm.receive_json_from(timeout=5) for _ in range(2)]
    assert [m["payload"]["n"] for m in got] == [1, 3]
    await comm.disconnect()


def test_group_send_many_reports_failure_instead_of_raising(settings):
    from config.broadcast import group_send_many
    from tests.conftest import redis_layers

    settings.CHANNEL_LAYERS = redis_layers("redis://127.0.0.1:1/0")
    assert group_send_many([("user-1", "notify", {"x": 1})]) == 0
    assert group_send_many([]) == 0
