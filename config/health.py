"""``GET /healthz``: database, channel layer / Redis, Celery and ML model, each ok or failing."""

from __future__ import annotations

import time

from django.conf import settings
from django.db import connection
from django.http import JsonResponse


def _check_database() -> dict:
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchone()
    return {"ok": True, "engine": connection.vendor}


def _check_redis() -> dict:
    if not settings.REDIS_URL:
        return {"ok": True, "mode": "in-memory channel layer (embedded)"}
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    finally:
        client.close()
    return {"ok": True, "mode": "channels-redis", "url": _redact(settings.REDIS_URL)}


def _check_celery() -> dict:
    from config.celery import app

    if app.conf.task_always_eager:
        return {"ok": True, "mode": "in-process (embedded)"}
    with app.connection_for_write() as conn:  # fail fast when the broker is down
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=1)
    replies = app.control.ping(timeout=1.0)
    if not replies:
        return {"ok": False, "mode": "workers", "error": "no Celery worker replied to ping"}
    return {"ok": True, "mode": "workers", "workers": sorted(k for r in replies for k in r)}


def _check_model() -> dict:
    from emotion.inference import get_predictor

    p = get_predictor()
    info = {k: v for k, v in p.describe().items() if k != "path"}  # no filesystem paths
    return {"ok": True, "loaded": True, **info}


CHECKS = {
    "database": _check_database,
    "redis": _check_redis,
    "celery": _check_celery,
    "model": _check_model,
}


def _redact(url: str) -> str:
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def healthz(request):
    results, failing = {}, []
    for name, check in CHECKS.items():
        t0 = time.monotonic()
        try:
            r = check()
        except Exception as e:  # report, never raise: the point is to say what is down
            r = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        r["ms"] = round((time.monotonic() - t0) * 1000, 1)
        results[name] = r
        if not r["ok"]:
            failing.append(name)
    body = {"status": "ok" if not failing else "fail", "failing": failing, "checks": results}
    return JsonResponse(body, status=200 if not failing else 503)
