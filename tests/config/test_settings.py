"""Settings resolve to the embedded default with no env, and to PostgreSQL + Redis with URLs."""

import json
import subprocess
import sys

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
