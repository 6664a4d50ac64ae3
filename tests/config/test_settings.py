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


LONG_KEY = "kT3v9Qx-8mZrW2pLf7Hs0aYcN5uEjB4dG1oVi6Rw_XnKqPzUy7"  # 50 characters, random


def _settings_value(env: dict, expr: str) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "config.settings", "HOME": "/tmp"}
    code = f"import json, django; django.setup(); from django.conf import settings; print(json.dumps({expr}))"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, "SECRET_KEY": LONG_KEY, **env},
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


# --- Secure cookies and the SECRET_KEY, by whether the server is reachable from elsewhere -------


def _cookies_secure(env: dict) -> list:
    out = _settings_value(
        env,
        "[settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE]",
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize(
    "env",
    [
        {"ALLOWED_HOSTS": "affect.example.org"},  # embedded (SQLite, no Redis) on a real host
        {"ALLOWED_HOSTS": "affect.example.org", "REDIS_URL": "redis://127.0.0.1:6379/3"},
        {"ALLOWED_HOSTS": "*"},
        {"ALLOWED_HOSTS": "10.0.0.5"},
        # a proxy that sends Host: 127.0.0.1 still needs the public origin for the form's POST
        {"ALLOWED_HOSTS": "127.0.0.1", "CSRF_TRUSTED_ORIGINS": "https://affect.example.org"},
        {"SECURE_SSL_REDIRECT": "true"},
        {"SECURE_HSTS_SECONDS": "3600"},
        {"TRUST_X_FORWARDED_PROTO": "true"},
    ],
)
def test_cookies_are_secure_by_default_with_debug_off_on_a_server_reachable_from_elsewhere(env):
    assert _cookies_secure(env) == [True, True]


@pytest.mark.parametrize(
    "env",
    [
        {},  # make run: default ALLOWED_HOSTS, http://127.0.0.1:8000/
        {"REDIS_URL": "redis://127.0.0.1:6379/3"},  # the test suite, compose on localhost
        {"ALLOWED_HOSTS": "localhost,127.0.0.1,[::1],app.localhost,127.0.1.1"},
        {"CSRF_TRUSTED_ORIGINS": "http://localhost:8000,http://127.0.0.1:8000"},
        {"DEBUG": "true", "ALLOWED_HOSTS": "affect.example.org"},
    ],
)
def test_cookies_are_not_secure_where_only_this_machine_can_reach_the_server(env):
    """Safari drops Secure cookies on http://localhost and http://127.0.0.1 (WebKit bug
    281149): `make run`'s login would fail there."""
    assert _cookies_secure(env) == [False, False]


def test_the_cookie_settings_can_be_set_either_way():
    local = {"SESSION_COOKIE_SECURE": "true", "CSRF_COOKIE_SECURE": "true"}
    assert _cookies_secure(local) == [True, True]
    remote = {"ALLOWED_HOSTS": "affect.example.org", "SESSION_COOKIE_SECURE": "false"}
    assert _cookies_secure({**remote, "CSRF_COOKIE_SECURE": "false"}) == [False, False]


@pytest.mark.parametrize(
    "key, why",
    [
        ("x", "has 1 characters (at least 50 needed)"),
        ("test-secret-key-not-for-production", "is a known placeholder"),
        ("insecure-dev-only-key-set-SECRET_KEY-in-production", "is a known placeholder"),
        ("django-insecure-" + "k3v9qx8mzrw2plf7hs0aycn5uejb4dg1ovi6rw", "is a known placeholder"),
        ("ab" * 40, "has fewer than 5 different characters"),
        (LONG_KEY[:49], "has 49 characters (at least 50 needed)"),
    ],
)
def test_a_weak_secret_key_is_refused_with_debug_off_on_a_server_reachable_from_elsewhere(key, why):
    out = _settings_value({"SECRET_KEY": key, "ALLOWED_HOSTS": "affect.example.org"}, "1")
    assert out.returncode != 0
    assert f"SECRET_KEY {why}" in out.stderr
    assert "secrets.token_urlsafe(50)" in out.stderr


@pytest.mark.parametrize(
    "env",
    [
        {"SECRET_KEY": LONG_KEY, "ALLOWED_HOSTS": "affect.example.org"},
        {"SECRET_KEY": "x", "ALLOWED_HOSTS": "affect.example.org", "DEBUG": "true"},
        # served locally only: the test suite's key, the image build's, `make run`'s own
        {"SECRET_KEY": "test-secret-key-not-for-production"},
        {"SECRET_KEY": "build", "REDIS_URL": "redis://127.0.0.1:6379/3"},
        {"SECRET_KEY": "browser-tests", "ALLOWED_HOSTS": "127.0.0.1,localhost"},
    ],
)
def test_a_strong_key_or_a_local_server_starts(env):
    out = _settings_value(env, "1")
    assert out.returncode == 0, out.stderr


def test_make_run_generates_a_key_the_check_accepts():
    """scripts/run.sh: secrets.token_urlsafe(50) when SECRET_KEY is unset."""
    import secrets

    key = secrets.token_urlsafe(50)
    out = _settings_value({"SECRET_KEY": key, "ALLOWED_HOSTS": "affect.example.org"}, "1")
    assert out.returncode == 0, out.stderr
