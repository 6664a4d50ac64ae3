"""``GET /healthz``: database, channel layer / Redis, Celery and ML model, each ok or failing.

No login is needed (load balancers and probes call it), so an anonymous caller gets only the
overall status, the names of failing checks and an ``ok`` flag per check; staff users also see
the details (modes, worker host names, error text, timings).

The Celery worker ping waits its whole timeout for replies, so its result is cached for
``HEALTHZ_WORKER_PING_CACHE_S`` seconds: probes every few seconds do not each block the
server's shared sync thread for a second. With separate workers (``REDIS_URL`` set) the model
lives in the inference workers, so the web process never loads it here; in the embedded
default the web process is the worker and loading it is the check.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse

logger = logging.getLogger(__name__)

WORKER_PING_CACHE_KEY = "healthz:celery-ping"
WORKER_PING_TIMEOUT_S = 1.0


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


def _ping_workers() -> list[str]:
    """Host names of the workers that answered a control ping (waits the whole timeout)."""
    from config.celery import app

    with app.connection_for_write() as conn:  # fail fast when the broker is down
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=1)
    replies = app.control.ping(timeout=WORKER_PING_TIMEOUT_S) or []
    return sorted(k for r in replies for k in r)


def _check_celery() -> dict:
    from config.celery import app

    if app.conf.task_always_eager:
        return {"ok": True, "mode": "in-process (embedded)"}
    ttl = settings.HEALTHZ_WORKER_PING_CACHE_S
    workers = cache.get(WORKER_PING_CACHE_KEY) if ttl > 0 else None
    cached = workers is not None
    if not cached:
        workers = _ping_workers()  # a broker error raises and is not cached
        if ttl > 0:
            cache.set(WORKER_PING_CACHE_KEY, workers, ttl)
    if not workers:
        return {"ok": False, "mode": "workers", "error": "no Celery worker replied to ping"}
    return {"ok": True, "mode": "workers", "workers": workers, "cached": cached}


def _check_model() -> dict:
    if settings.REDIS_URL:
        # Separate workers: the model is loaded (once) by the inference workers, not here.
        # Loading it would pull torch and ONNX Runtime into every web process.
        return {"ok": True, "mode": "inference workers", "loaded": False}
    from emotion.inference import get_predictor

    p = get_predictor()
    info = {k: v for k, v in p.describe().items() if k != "path"}  # no filesystem paths
    return {"ok": True, "mode": "in-process (embedded)", "loaded": True, **info}


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


def _shows_details(request) -> bool:
    """Staff see the details, signed in by the session cookie or by an API token (as a
    monitoring script would be)."""
    try:  # the lazy user needs the session and user tables, which may be what is down
        user = getattr(request, "user", None)
        if (user is None or not user.is_authenticated) and request.headers.get("Authorization"):
            from config.auth import TokenAuthentication

            found = TokenAuthentication().authenticate(request)
            user = found[0] if found else None
        return bool(user is not None and user.is_active and user.is_staff)
    except Exception:  # a bad token is an anonymous caller here, not an error
        return False


def healthz(request):
    results, failing = {}, []
    for name, check in CHECKS.items():
        t0 = time.monotonic()
        try:
            r = check()
        except Exception as e:  # report, never raise: the point is to say what is down
            r = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            # the body shows the reason to staff only: the operator's log always has it
            logger.warning("healthz: %s failing: %s", name, r["error"], exc_info=True)
        r["ms"] = round((time.monotonic() - t0) * 1000, 1)
        results[name] = r
        if not r["ok"]:
            failing.append(name)
    if not _shows_details(request):  # anonymous / non-staff: no host names, URLs or errors
        results = {name: {"ok": r["ok"]} for name, r in results.items()}
    body = {"status": "ok" if not failing else "fail", "failing": failing, "checks": results}
    return JsonResponse(body, status=200 if not failing else 503)
