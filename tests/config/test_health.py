import pytest

from config.health import WORKER_PING_CACHE_KEY
from tests.conftest import redis_layers
from tests.factories import AdminFactory, api_token

HOST = "celery@gpu-node-7"


@pytest.fixture(autouse=True)
def _fresh_worker_ping_cache(request, _service_mode):
    """A worker list cached by an earlier test must not answer for this one (Redis cache)."""
    if request.node.get_closest_marker("redis"):
        from django.core.cache import cache

        cache.delete(WORKER_PING_CACHE_KEY)


@pytest.fixture
def fake_ping(monkeypatch):
    """Replace the control ping with one that answers like a worker on HOST, counting calls."""
    from config.celery import app

    calls = []

    def ping(*args, **kwargs):
        calls.append(kwargs)
        return [{HOST: {"ok": "pong"}}]

    monkeypatch.setattr(app.control, "ping", ping)
    return calls


@pytest.mark.django_db
def test_healthz_ok_in_embedded_mode(admin_client):
    r = admin_client.get("/healthz")
    body = r.json()
    assert r.status_code == 200, body
    assert body["status"] == "ok" and body["failing"] == []
    assert set(body["checks"]) == {"database", "redis", "celery", "model"}
    assert body["checks"]["celery"]["mode"].startswith("in-process")
    assert body["checks"]["model"]["loaded"] is True
    assert len(body["checks"]["model"]["version"]) == 12


@pytest.mark.django_db
def test_anonymous_gets_ok_flags_only_in_embedded_mode(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body == {
        "status": "ok",
        "failing": [],
        "checks": {name: {"ok": True} for name in ("database", "redis", "celery", "model")},
    }


@pytest.mark.django_db
def test_healthz_503_names_redis_when_it_is_down(client, admin_client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.CHANNEL_LAYERS = redis_layers(settings.REDIS_URL)
    r = admin_client.get("/healthz")
    assert r.status_code == 503
    body = r.json()
    assert "redis" in body["failing"]
    assert "Error" in body["checks"]["redis"]["error"]
    assert body["checks"]["database"]["ok"] is True
    # anonymous: the same status and failing list, no error text or URL
    anon = client.get("/healthz")
    assert anon.status_code == 503
    assert anon.json()["failing"] == body["failing"]
    assert anon.json()["checks"]["redis"] == {"ok": False}
    assert b"Error" not in anon.content and b"127.0.0.1" not in anon.content


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_healthz_with_redis_and_a_worker(admin_client, celery_worker):
    body = admin_client.get("/healthz").json()
    assert body["status"] == "ok", body
    assert body["checks"]["redis"]["mode"] == "channels-redis"
    assert body["checks"]["celery"]["workers"]


@pytest.mark.redis
@pytest.mark.django_db
def test_healthz_503_names_celery_without_worker(client):
    body = client.get("/healthz")
    assert body.status_code == 503
    assert body.json()["failing"] == ["celery"]


@pytest.mark.redis
@pytest.mark.django_db
def test_anonymous_sees_no_worker_host_names(client, fake_ping):
    r = client.get("/healthz")
    assert r.status_code == 200, r.json()
    assert r.json()["checks"]["celery"] == {"ok": True}
    assert HOST.encode() not in r.content
    assert b"gpu-node" not in r.content


@pytest.mark.redis
@pytest.mark.django_db
def test_non_staff_user_sees_no_worker_host_names(client, fake_ping):
    client.force_login(AdminFactory())  # a platform admin role, but not Django staff
    r = client.get("/healthz")
    assert r.status_code == 200
    assert HOST.encode() not in r.content


@pytest.mark.redis
@pytest.mark.django_db
def test_staff_sees_worker_host_names(admin_client, fake_ping):
    body = admin_client.get("/healthz").json()
    assert body["checks"]["celery"]["ok"] is True
    assert body["checks"]["celery"]["workers"] == [HOST]


@pytest.mark.redis
@pytest.mark.django_db
def test_worker_ping_is_cached_between_calls(admin_client, fake_ping, settings):
    settings.HEALTHZ_WORKER_PING_CACHE_S = 15
    first = admin_client.get("/healthz").json()["checks"]["celery"]
    second = admin_client.get("/healthz").json()["checks"]["celery"]
    assert len(fake_ping) == 1, "the second call within the cache window pinged again"
    assert first["cached"] is False and second["cached"] is True
    assert second["workers"] == [HOST]


@pytest.mark.redis
@pytest.mark.django_db
def test_worker_ping_uncached_when_the_window_is_zero(client, fake_ping, settings):
    settings.HEALTHZ_WORKER_PING_CACHE_S = 0
    client.get("/healthz")
    client.get("/healthz")
    assert len(fake_ping) == 2


@pytest.mark.redis
@pytest.mark.django_db
def test_no_worker_reply_is_cached_too(client, monkeypatch):
    from config.celery import app

    calls = []
    monkeypatch.setattr(app.control, "ping", lambda *a, **k: calls.append(k) or [])
    assert client.get("/healthz").status_code == 503
    assert client.get("/healthz").status_code == 503
    assert len(calls) == 1


@pytest.mark.redis
@pytest.mark.django_db
def test_web_with_separate_workers_does_not_load_the_model(admin_client, fake_ping, monkeypatch):
    import emotion.inference

    loads = []
    monkeypatch.setattr(emotion.inference, "get_predictor", lambda: loads.append(1))
    body = admin_client.get("/healthz").json()
    assert loads == [], "/healthz loaded the model in the web process"
    assert body["checks"]["model"] == {
        "ok": True,
        "mode": "inference workers",
        "loaded": False,
        "ms": body["checks"]["model"]["ms"],
    }


@pytest.mark.django_db
def test_database_down_with_a_session_cookie_is_a_503_not_a_500(admin_client, monkeypatch):
    """The user behind a session cookie is looked up in the database that is down: the probe
    still answers 503 with the failing check, without the staff details."""
    from django.db.utils import OperationalError

    import config.health

    def down():
        raise OperationalError("connection refused")

    def user_lookup_fails(request):
        raise OperationalError("connection refused")

    monkeypatch.setitem(config.health.CHECKS, "database", down)
    monkeypatch.setattr("django.contrib.auth.middleware.auth.get_user", user_lookup_fails)
    r = admin_client.get("/healthz")
    assert r.status_code == 503
    body = r.json()
    assert "database" in body["failing"] and body["checks"]["database"] == {"ok": False}


@pytest.mark.redis
@pytest.mark.django_db
def test_staff_token_sees_the_details_and_a_bad_token_is_anonymous(client, fake_ping, admin_user):
    """A monitoring script signs in with the token `make run` prints, not a session."""
    token = api_token(admin_user)
    body = client.get("/healthz", HTTP_AUTHORIZATION=f"Token {token}").json()
    assert body["checks"]["celery"]["workers"] == [HOST]
    non_staff = api_token(AdminFactory())
    for header in (f"Token {non_staff}", "Token not-a-token", "Bearer x"):
        r = client.get("/healthz", HTTP_AUTHORIZATION=header)
        assert r.status_code == 200 and HOST.encode() not in r.content, header
