"""How the product's Redis clients connect: the channel layer, the cache, the Celery broker.

redis-py 8 gives up any read after ``socket_timeout`` (5 s by default). channels-redis waits
for a socket's next message with ``BZPOPMIN … timeout=brpop_timeout`` (5 s): on a quiet
socket the server answers that empty wait exactly when the client gives up, the read raises
``TimeoutError`` and the socket is closed with 1011. The channel layer's clients therefore read
with a timeout well past that wait; TCP keepalive still finds a dead connection. Settings and
the tests build the layer through :func:`channel_layers`, so tests run what production runs.
Options in the URL's query (``?socket_timeout=…``) still win: redis-py lets them override.

The cache sends no blocking command, so redis-py's 5 s default is kept there (pinned below);
Celery's broker (kombu) reads with no socket timeout and a 1 s ``BRPOP``, and checks the
connection itself (``health_check_interval``), so it has no such trap.
"""

from __future__ import annotations

from channels_redis.core import RedisChannelLayer

#: seconds a channel-layer read may wait: channels-redis's blocking pop plus a margin for a
#: busy event loop
CHANNEL_LAYER_SOCKET_TIMEOUT = RedisChannelLayer.brpop_timeout + 10
#: seconds to open a connection: an outage is reported quickly, not after the OS's minutes
CONNECT_TIMEOUT = 5
CACHE_SOCKET_TIMEOUT = 5


def channel_layer_host(url: str) -> dict:
    """One channels-redis host: the URL plus the client settings that keep quiet sockets open."""
    return {
        "address": url,
        "socket_timeout": CHANNEL_LAYER_SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_keepalive": True,
    }


def channel_layers(url: str, group_expiry: int = 300) -> dict:
    """``CHANNEL_LAYERS`` for channels-redis on ``url``; a group member not added again within
    ``group_expiry`` seconds is dropped (sockets stay: ``config.broadcast.group_join``)."""
    config = {
        "hosts": [channel_layer_host(url)],
        "capacity": 1000,
        "expiry": 30,
        "group_expiry": group_expiry,
    }
    return {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": config}}


def cache_options() -> dict:
    """``OPTIONS`` of Django's RedisCache (passed to redis-py's connection pool)."""
    return {"socket_timeout": CACHE_SOCKET_TIMEOUT, "socket_connect_timeout": CONNECT_TIMEOUT}
