"""Settings resolve to the embedded default with no env, and to PostgreSQL + Redis with URLs."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PROBE = """
import json, django
from django.conf import settings
django.setup()
from config.celery import app
print(json.dumps({
    "db": settings.DATABASES["default"]["ENGINE"],
    "db_name": str(settings.DATABASES["default"]["NAME"]),
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "eager": app.conf.task_always_eager,
    "broker": app.conf.broker_url,
    "acks_late": app.conf.task_acks_late,
    "prefetch": app.conf.worker_prefetch_multiplier,
    "route": app.amqp.router.route({}, "emotion.tasks.analyse_batch")["queue"].name,
    "route_other": app.amqp.router.route({}, "tutoring.tasks.purge")["queue"].name,
}))
"""


def probe(env: dict) -> dict:
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "config.settings", "HOME": "/tmp"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_embedded_default_without_urls(tmp_path):
    s = probe({"SECRET_KEY": "x", "DATA_DIR": str(tmp_path)})
    assert s["db"] == "django.db.backends.sqlite3"
    assert s["db_name"] == str(tmp_path / "db.sqlite3")
    assert s["layer"] == "channels.layers.InMemoryChannelLayer"
    assert s["eager"] is True


def test_postgres_and_redis_with_urls():
    s = probe(
        {
            "SECRET_KEY": "x",
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test",
            "REDIS_URL": "redis://127.0.0.1:6379/3",
            "CELERY_GPU_QUEUE": "gpu-h100",
        }
    )
    assert s["db"] == "django.db.backends.postgresql"
    assert s["db_name"] == "test"
    assert s["layer"] == "channels_redis.core.RedisChannelLayer"
    assert s["eager"] is False
    assert s["broker"] == "redis://127.0.0.1:6379/3"
    assert s["acks_late"] is True and s["prefetch"] == 1
    assert s["route"] == "gpu-h100"
    assert s["route_other"] == "default"


def test_secret_key_required_when_debug_off():
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "config.settings", "HOME": "/tmp"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "SECRET_KEY must be set" in out.stderr


def test_unknown_ml_precision_is_refused_at_startup():
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "config.settings", "HOME": "/tmp"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**base, "SECRET_KEY": "x", "ML_PRECISION": "int4"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "ML_PRECISION must be auto, fp32 or int8, not 'int4'" in out.stderr
    out = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.ML_PRECISION)"],
        cwd=ROOT,
        env={**base, "SECRET_KEY": "x", "ML_PRECISION": ""},  # empty = unset
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "auto"


def test_check_deploy_is_clean_with_production_env():
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "SECRET_KEY": "a-long-production-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test",
        "REDIS_URL": "redis://127.0.0.1:6379/3",
        "ALLOWED_HOSTS": "affect.example.org",
        "CSRF_TRUSTED_ORIGINS": "https://affect.example.org",
        "SECURE_SSL_REDIRECT": "true",
        "SECURE_HSTS_SECONDS": "31536000",
    }
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


# --- NUM_PROXIES: who the login throttle counts ------------------------------------------------


def _settings_value(env: dict, expr: str) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "config.settings", "HOME": "/tmp"}
    code = f"import json, django; django.setup(); from django.conf import settings; print(json.dumps({expr}))"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, "SECRET_KEY": "x", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_num_proxies_defaults_to_zero_and_is_read_from_env():
    expr = 'settings.REST_FRAMEWORK["NUM_PROXIES"]'
    assert json.loads(_settings_value({}, expr).stdout) == 0
    assert json.loads(_settings_value({"NUM_PROXIES": "2"}, expr).stdout) == 2
    bad = _settings_value({"NUM_PROXIES": "-1"}, expr)
    assert bad.returncode != 0 and "NUM_PROXIES must be 0 or more" in bad.stderr


@pytest.fixture
def auth_rate_3_per_min(monkeypatch):
    """The auth scope at 3/min, on a fresh throttle history (the cache outlives tests)."""
    from django.core.cache import cache
    from rest_framework.throttling import SimpleRateThrottle

    # THROTTLE_RATES is read from settings once, at import: patch the class attribute
    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, "auth": "3/min"}
    )
    idents = ["203.0.113.7", "198.51.100.1", "198.51.100.2"]
    idents += [f"198.51.100.{i}" for i in range(10, 20)]
    for ident in idents:
        cache.delete_many([f"throttle_auth_{ident}", f"throttle_anon_{ident}"])


def _login(client, xff: str):
    return client.post(
        "/api/auth/token/",
        {"username": "nobody", "password": "wrong"},
        HTTP_X_FORWARDED_FOR=xff,
    )


@pytest.mark.django_db
def test_varying_x_forwarded_for_does_not_reset_the_auth_throttle(auth_rate_3_per_min):
    from rest_framework.test import APIClient

    client = APIClient(REMOTE_ADDR="203.0.113.7")
    codes = [_login(client, f"198.51.100.{10 + i}").status_code for i in range(4)]
    assert codes == [400, 400, 400, 429]


@pytest.mark.django_db
def test_num_proxies_one_throttles_by_the_address_the_proxy_appended(auth_rate_3_per_min, settings):
    from rest_framework.test import APIClient

    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxy = APIClient(REMOTE_ADDR="203.0.113.7")  # every request arrives from the proxy
    # one client behind the proxy, writing something different in front each time
    codes = [_login(proxy, f"spoof-{i}, 198.51.100.1").status_code for i in range(4)]
    assert codes == [400, 400, 400, 429]
    # another client behind the same proxy has its own budget
    assert _login(proxy, "198.51.100.2").status_code == 400


def _auth_scoped_view():
    from rest_framework.response import Response
    from rest_framework.throttling import ScopedRateThrottle
    from rest_framework.views import APIView

    class AuthScoped(APIView):
        authentication_classes = []
        permission_classes = []
        throttle_classes = [ScopedRateThrottle]
        throttle_scope = "auth"

        def post(self, request):
            return Response({})

    return AuthScoped.as_view()


def test_auth_scope_counts_remote_addr_whatever_x_forwarded_for_says(auth_rate_3_per_min):
    """The settings' identity rule through DRF's throttle on a bare view."""
    from rest_framework.test import APIRequestFactory

    view, rf = _auth_scoped_view(), APIRequestFactory()
    codes = [
        view(
            rf.post("/", REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR=f"198.51.100.{10 + i}")
        ).status_code
        for i in range(4)
    ]
    assert codes == [200, 200, 200, 429]


# --- HTTPS behind a proxy ------------------------------------------------------------------------


def test_x_forwarded_proto_is_trusted_only_when_configured():
    expr = "list(getattr(settings, 'SECURE_PROXY_SSL_HEADER', None) or [])"
    assert json.loads(_settings_value({}, expr).stdout) == []
    assert json.loads(_settings_value({"TRUST_X_FORWARDED_PROTO": "false"}, expr).stdout) == []
    trusted = _settings_value({"TRUST_X_FORWARDED_PROTO": "true"}, expr)
    assert json.loads(trusted.stdout) == ["HTTP_X_FORWARDED_PROTO", "https"]


@pytest.mark.django_db
def test_a_client_cannot_claim_https_with_x_forwarded_proto(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    r = client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
    assert r.status_code == 301 and r["Location"].startswith("https://")


@pytest.mark.django_db
def test_a_trusted_proxy_header_marks_the_request_secure(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https").status_code == 200
    assert client.get("/accounts/login/").status_code == 301


@pytest.mark.django_db
def test_healthz_is_not_redirected_to_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/courses/").status_code == 301  # everything else still is
