import pytest

from tests.conftest import redis_layers


@pytest.mark.django_db
def test_healthz_ok_in_embedded_mode(client):
    r = client.get("/healthz")
    body = r.json()
    assert r.status_code == 200, body
    assert body["status"] == "ok" and body["failing"] == []
    assert set(body["checks"]) == {"database", "redis", "celery", "model"}
    assert body["checks"]["celery"]["mode"].startswith("in-process")
    assert body["checks"]["model"]["loaded"] is True
    assert len(body["checks"]["model"]["version"]) == 12


@pytest.mark.django_db
def test_healthz_503_names_redis_when_it_is_down(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.CHANNEL_LAYERS = redis_layers(settings.REDIS_URL)
    r = client.get("/healthz")
    assert r.status_code == 503
    body = r.json()
    assert "redis" in body["failing"]
    assert "Error" in body["checks"]["redis"]["error"]
    assert body["checks"]["database"]["ok"] is True


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_healthz_with_redis_and_a_worker(client, celery_worker):
    body = client.get("/healthz").json()
    assert body["status"] == "ok", body
    assert body["checks"]["redis"]["mode"] == "channels-redis"
    assert body["checks"]["celery"]["workers"]


@pytest.mark.redis
@pytest.mark.django_db
def test_healthz_503_names_celery_without_worker(client):
    body = client.get("/healthz")
    assert body.status_code == 503
    assert body.json()["failing"] == ["celery"]
