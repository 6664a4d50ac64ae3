"""A batch's session summaries reach the stream sockets through one channel-layer message
(``emotion.fanout``): every server process reads it and hands each summary to its own sockets
of that session only, in order, a slow socket holding up no other; a socket that left (or
whose consumer crashed) gets nothing more."""

import asyncio
import gc

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers as layers_of

from config.broadcast import group_send_many
from config.redis_clients import channel_layers
from emotion.fanout import get_fanout, summaries_message
from tests.services import test_redis_url


class Sock:
    def __init__(self, gate: asyncio.Event | None = None):
        self.got: list[dict] = []
        self.gate = gate

    async def session_summary(self, event):
        if self.gate is not None:
            await self.gate.wait()
        self.got.append(event["payload"])


def summary(session: int, seq: int) -> dict:
    return {"session": session, "analysed_sequences": [seq]}


async def until(check, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


@pytest.fixture
def redis_layer(settings):
    settings.CHANNEL_LAYERS = channel_layers(test_redis_url())
    layers_of.backends = {}
    yield
    layers_of.backends = {}


async def send(*payload_lists) -> None:
    """What a worker does after its batches (sync code, in a thread)."""
    await sync_to_async(group_send_many)([summaries_message(p) for p in payload_lists])


@pytest.mark.redis
async def test_each_process_delivers_only_its_own_sessions_in_order(redis_layer):
    from channels.layers import get_channel_layer

    # two server processes: each its own layer (connection pool, channel prefix)
    this = get_fanout(get_channel_layer())
    other_layer = layers_of.make_backend("default")
    other = type(this)(other_layer)
    mine, theirs, also_mine = Sock(), Sock(), Sock()
    await this.add(1, mine)
    await this.add(3, also_mine)
    await other.add(2, theirs)

    await send([summary(1, 0), summary(2, 0)], [summary(1, 1), summary(3, 0)])

    await until(lambda: len(mine.got) == 2 and theirs.got and also_mine.got)
    assert [p["analysed_sequences"] for p in mine.got] == [[0], [1]]
    assert theirs.got == [summary(2, 0)] and also_mine.got == [summary(3, 0)]
    for f, sid, s in ((this, 1, mine), (this, 3, also_mine), (other, 2, theirs)):
        f.discard(sid, s)
    other.reader.cancel()


@pytest.mark.redis
async def test_a_slow_socket_holds_up_no_other(redis_layer):
    from channels.layers import get_channel_layer

    fanout = get_fanout(get_channel_layer())
    gate = asyncio.Event()
    slow, quick = Sock(gate), Sock()
    await fanout.add(1, slow)
    await fanout.add(2, quick)
    await send([summary(1, 0), summary(2, 0)], [summary(1, 1), summary(2, 1)])
    await until(lambda: len(quick.got) == 2)
    assert slow.got == []
    gate.set()
    await until(lambda: len(slow.got) == 2)
    assert [p["analysed_sequences"] for p in slow.got] == [[0], [1]]  # still in order
    fanout.discard(1, slow)
    fanout.discard(2, quick)


@pytest.mark.redis
async def test_a_socket_that_left_or_was_dropped_gets_nothing(redis_layer):
    from channels.layers import get_channel_layer

    fanout = get_fanout(get_channel_layer())
    left, stays = Sock(), Sock()
    await fanout.add(1, left)
    await fanout.add(1, stays)
    fanout.discard(1, left)
    crashed = Sock()  # a consumer that raised: nothing told the fan-out, nothing holds it
    await fanout.add(2, crashed)
    del crashed
    gc.collect()

    await send([summary(1, 0), summary(2, 0)])
    await until(lambda: stays.got)
    await asyncio.sleep(0.2)
    assert left.got == [] and stays.got == [summary(1, 0)]
    assert 2 not in {k for k, v in fanout.sockets.items() if len(v)}

    fanout.discard(1, stays)  # the process's last socket: nothing is held for it
    await send([summary(1, 1)])
    await asyncio.sleep(0.2)
    assert not fanout.sockets and stays.got == [summary(1, 0)]
    again = Sock()
    await fanout.add(1, again)  # the next one gets what comes from then on
    await send([summary(1, 2)])
    await until(lambda: again.got)
    assert again.got == [summary(1, 2)]
    fanout.discard(1, again)
