"""Course groups hold only live sockets (``config.broadcast.group_join``): the channel of a
server process that died without leaving stops taking the group's messages once the layer's
``group_expiry`` passes, while a live view that stays connected past it still gets them.

Before, members were kept for channels-redis's default day: in the pipeline benchmark the
channels of earlier servers' live views (never read again) sat in ``course-1`` full, and every
message to the course was refused for them ("5 of 5 channels over capacity in group
course-1"); a live view added once would, with a short expiry, have dropped out instead."""

import asyncio

import pytest
from channels.layers import get_channel_layer

from config.broadcast import course_group
from config.redis_clients import channel_layers
from tests.emotion.stream_client import connect
from tests.services import test_redis_url

EXPIRY_S = 2


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_a_dead_channel_leaves_the_course_group_and_a_live_view_stays(classroom, settings):
    settings.CHANNEL_LAYERS = channel_layers(test_redis_url(), group_expiry=EXPIRY_S)
    layer = get_channel_layer()
    group = course_group(classroom.course.pk)
    live, ok, _ = await connect(f"/ws/courses/{classroom.course.pk}/live/", classroom.instructor)
    assert ok
    assert (await live.receive_json_from(timeout=10))["type"] == "snapshot"
    dead = await layer.new_channel()  # a view on a process that died: never read, never left
    await layer.group_add(group, dead)

    await asyncio.sleep(EXPIRY_S * 1.6)  # past the expiry of both additions
    payload = {"session": 1, "learner": 2, "learner_name": "Ann"}
    await layer.group_send(group, {"type": "session.started", "payload": payload})

    assert await live.receive_json_from(timeout=10) == {"type": "session_started", **payload}
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(dead), timeout=1)
    await live.disconnect()
