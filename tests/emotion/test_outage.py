"""A Redis outage (frame store, broker, channel layer) answers 503 with Retry-After or a clear
ack, never 500 or a crashed socket, and loses nothing already accepted (issue 20, item 12).
Each test stops and starts a private redis-server of its own."""

import pytest
from channels.db import database_sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from config.redis_clients import channel_layers
from emotion.framestore import get_frame_store
from emotion.models import Reading
from tests.emotion.stream_client import connect, frame_message
from tests.redis_server import PrivateRedis


@pytest.fixture
def private_redis(tmp_path):
    r = PrivateRedis(tmp_path)
    r.start()
    yield r
    r.stop()


def upload(classroom, frames):
    c = APIClient()
    c.force_authenticate(classroom.learner)
    files = [SimpleUploadedFile(f"{i}.jpg", d, "image/jpeg") for i, d in enumerate(frames)]
    return c.post(
        f"/api/sessions/{classroom.session.pk}/frames/", {"frames": files}, format="multipart"
    )


@pytest.mark.django_db
def test_frame_store_away_answers_503_and_accepts_nothing(
    classroom, face_frames, private_redis, settings
):
    settings.REDIS_URL = private_redis.url  # the frame store
    private_redis.stop()
    r = upload(classroom, face_frames[:3])
    assert r.status_code == 503
    assert int(r["Retry-After"]) > 0
    assert r.json()["error"]["code"] == "service_unavailable"
    assert set(r.json()["error"]) == {"status", "code", "message", "details"}
    assert not Reading.objects.filter(session=classroom.session).exists()  # all or nothing

    private_redis.start()
    r = upload(classroom, face_frames[:3])
    assert r.status_code == 202 and r.json()["accepted"] == [0, 1, 2]
    assert len(get_frame_store().keys()) == 3


@pytest.fixture
def broker_on(private_redis):
    """Point Celery's publishing at the private Redis: new pools for it, the suite's own put
    back untouched afterwards."""
    from config.celery import app

    saved = app.conf.broker_url, app._pool, app.amqp._producer_pool
    app.conf.broker_url, app._pool, app.amqp._producer_pool = private_redis.url, None, None
    yield private_redis
    app.conf.broker_url, app._pool, app.amqp._producer_pool = saved


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_broker_away_after_the_frames_are_stored_still_accepts_them(
    classroom, face_frames, broker_on
):
    broker_on.stop()
    r = upload(classroom, face_frames[:3])
    assert r.status_code == 202 and r.json()["accepted"] == [0, 1, 2]
    pending = Reading.objects.filter(session=classroom.session, analysed_at__isnull=True)
    assert pending.count() == 3  # kept for the periodic re-queue, bytes still held
    ids = list(pending.values_list("pk", flat=True))
    assert len(get_frame_store().get_many(ids)) == 3
    get_frame_store().delete_many(ids)  # the shared test Redis: other tests count its keys


@pytest.mark.django_db(transaction=True)
async def test_stream_frames_get_a_clear_ack_while_the_frame_store_is_away(
    classroom, face_frames, private_redis, settings
):
    settings.REDIS_URL = private_redis.url
    comm, ok, _ = await connect(f"/ws/sessions/{classroom.session.pk}/stream/", classroom.learner)
    assert ok and (await comm.receive_json_from(timeout=10))["type"] == "ready"
    await database_sync_to_async(private_redis.stop)()
    await comm.send_to(bytes_data=frame_message(0, face_frames[0]))
    ack = await comm.receive_json_from(timeout=15)
    assert (ack["status"], ack["code"]) == ("dropped", "unavailable") and ack["retry_after"] > 0
    await database_sync_to_async(private_redis.start)()
    await comm.send_to(bytes_data=frame_message(0, face_frames[0]))  # the same frame again
    ack = await comm.receive_json_from(timeout=15)
    assert (ack["sequence"], ack["status"]) == (0, "accepted")
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_sockets_opened_while_the_channel_layer_is_away_are_told_to_come_back(
    classroom, private_redis, settings
):
    settings.CHANNEL_LAYERS = channel_layers(private_redis.url)
    await database_sync_to_async(private_redis.stop)()
    for path, user in [
        (f"/ws/sessions/{classroom.session.pk}/stream/", classroom.learner),
        (f"/ws/courses/{classroom.course.pk}/live/", classroom.instructor),
    ]:
        comm, ok, _ = await connect(path, user)
        assert ok
        msg = await comm.receive_json_from(timeout=15)
        closed = await comm.receive_output(timeout=15)
        assert (msg["type"], msg["code"], closed["code"]) == ("closed", 1013, 1013)
    await database_sync_to_async(private_redis.start)()
    comm, ok, _ = await connect(f"/ws/courses/{classroom.course.pk}/live/", classroom.instructor)
    assert ok and (await comm.receive_json_from(timeout=10))["type"] == "snapshot"
    await comm.disconnect()
