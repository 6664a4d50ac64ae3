"""Settings, all read from the environment through ``config.env.env``.

Embedded default (nothing set): SQLite under DATA_DIR, in-memory channel layer, Celery tasks
executed in-process. ``DATABASE_URL`` switches to PostgreSQL; ``REDIS_URL`` switches to the
channels-redis layer and a Redis-backed Celery with separate worker processes.
"""

import contextlib
from datetime import timedelta

from config.env import BASE_DIR, env, env_path

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "insecure-dev-only-key-set-SECRET_KEY-in-production"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
DATA_DIR = env_path("DATA_DIR", BASE_DIR / ".data")
MEDIA_ROOT = env_path("MEDIA_ROOT", DATA_DIR / "media")
MEDIA_URL = "/media/"
STATIC_ROOT = env_path("STATIC_ROOT", DATA_DIR / "static")
STATIC_URL = "/static/"
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",  # API tokens: hashed at rest, with an expiry (REST_KNOX below)
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "tutoring",
    "emotion",
    "records",  # reports, export, erasure, retention: imports both apps above
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.csp.content_security_policy",  # Django 5.2 has no CSP of its own
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None
AUTH_USER_MODEL = "tutoring.User"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------
DATABASE_URL = env.str("DATABASE_URL", default="")
if DATABASE_URL:
    DATABASES = {"default": env.db_url("DATABASE_URL")}
    # 0: a connection per request, closed at its end. Under ASGI each request's sync
    # code runs in a thread of its own, so a persistent connection is never reused but stays
    # open: 60 s left 40 idle connections after 60 requests (Django's docs: disable them
    # under ASGI). A Celery worker may set DB_CONN_MAX_AGE to reuse its connection.
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=0))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "db.sqlite3",
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
    # SQLite creates the file but not its folder ("unable to open database file"): on a fresh
    # clone `manage.py migrate` must work before `make run` has made .data/. A folder that
    # cannot be made is left for SQLite to report when it connects.
    with contextlib.suppress(OSError):
        DATA_DIR.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# WebSocket consumers' database calls run on this many threads per server process, each
# keeping its connection this long (config.db); 0 connects for every call
SOCKET_DB_THREADS = env.int("SOCKET_DB_THREADS", default=4)
SOCKET_DB_CONN_MAX_AGE = env.int("SOCKET_DB_CONN_MAX_AGE", default=60)

# --- Redis: channel layer + Celery ----------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
EMBEDDED = not REDIS_URL
if REDIS_URL:
    from config.redis_clients import channel_layers

    # client timeouts that keep a quiet live socket open (config.redis_clients says why)
    CHANNEL_LAYERS = channel_layers(
        REDIS_URL, group_expiry=env.int("CHANNEL_GROUP_EXPIRY_SECONDS", default=300)
    )
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or "cache+memory://"
CELERY_TASK_ALWAYS_EAGER = EMBEDDED  # embedded default: tasks run in-process
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A batch whose worker died (or whose message was lost) must run again while its frames'
# bytes are still in the frame store: FRAME_TTL_SECONDS bounds the redelivery after the
# visibility timeout, and the beat re-queue, including the task's own time. Checked below.
FRAME_TTL_SECONDS = env.int("FRAME_TTL_SECONDS", default=300)  # raw bytes never outlive this
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=40)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=30)
# Unacknowledged messages (a worker died mid-task) return to the queue after
# visibility_timeout; the Redis transport scans for them every interval × throttle seconds.
# Longer than the hard time limit, so a batch still running is not handed out twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=45),
    "unacked_restore_interval": env.int("CELERY_UNACKED_RESTORE_INTERVAL", default=5),
    "unacked_restore_throttle": env.int("CELERY_UNACKED_RESTORE_THROTTLE", default=1),
}
# the safety net for frames whose message was lost (a web process died holding a partial
# batch, a broker restart): pending this long, they are queued again, checked this often
# Housekeeping (retention purge, idle sessions, re-queue) is acknowledged on receipt and has
# limits of its own: the visibility timeout above is sized for inference batches, and a purge
# of a large school's data may run longer; cut short, it finishes on its next run.
HOUSEKEEPING_TASK_TIME_LIMIT = env.int("HOUSEKEEPING_TASK_TIME_LIMIT", default=900)
HOUSEKEEPING_TASK_OPTIONS = {
    "acks_late": False,
    "time_limit": HOUSEKEEPING_TASK_TIME_LIMIT,
    "soft_time_limit": HOUSEKEEPING_TASK_TIME_LIMIT * 9 // 10,
}
FRAME_REQUEUE_AFTER_SECONDS = env.int("FRAME_REQUEUE_AFTER_SECONDS", default=60)
FRAME_REQUEUE_INTERVAL_SECONDS = env.int("FRAME_REQUEUE_INTERVAL_SECONDS", default=30)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_GPU_QUEUE = env.str("CELERY_GPU_QUEUE", default="gpu")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# /healthz: how long one Celery worker ping (which waits its whole 1 s timeout) is reused
HEALTHZ_WORKER_PING_CACHE_S = env.int("HEALTHZ_WORKER_PING_CACHE_S", default=15)
# beat's state file: under DATA_DIR, which the app user owns (the working directory of the
# Docker image, /app, is root's: beat could not write there and crash-looped)
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "requeue-stale-readings": {
        "task": "emotion.tasks.requeue_stale_readings",
        "schedule": float(FRAME_REQUEUE_INTERVAL_SECONDS),
    },
    "end-idle-sessions": {"task": "tutoring.tasks.end_idle_sessions", "schedule": 300.0},
    "purge-expired-readings": {
        "task": "tutoring.tasks.purge_expired_readings",
        "schedule": env.float("PURGE_INTERVAL_SECONDS", default=3600.0),
    },
}

# --- ML -------------------------------------------------------------------------------------
ML_WEIGHTS = env.str("ML_WEIGHTS", default="")  # empty: the shipped default in ml/weights/
ML_DEVICE = env.str("ML_DEVICE", default="auto")
# auto: the checkpoint's int8 network on CPU where it carries one (ONNX Runtime), else fp32
ML_PRECISION = env.str("ML_PRECISION", default="") or "auto"  # empty = unset, as in ml
if ML_PRECISION not in ("auto", "fp32", "int8"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"ML_PRECISION must be auto, fp32 or int8, not {ML_PRECISION!r}")
# share of confident readings (with a kept crop) queued for review at random, beside the
# uncertain ones: the queue then measures the model, not only its doubts
REVIEW_SAMPLE_RATE = env.float("REVIEW_SAMPLE_RATE", default=0.05)
if not 0.0 <= REVIEW_SAMPLE_RATE <= 1.0:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"REVIEW_SAMPLE_RATE must be in 0..1, not {REVIEW_SAMPLE_RATE}")
# the model registry (docs/models.md): ML_WEIGHTS is only the first active version
MODEL_DIR = env_path("MODEL_DIR", DATA_DIR / "models")  # fine-tuned checkpoints (shared storage)
MODEL_PROMOTION_TOLERANCE = env.float("MODEL_PROMOTION_TOLERANCE", default=0.01)
MODEL_PROMOTION_MIN_REVIEWED = env.int("MODEL_PROMOTION_MIN_REVIEWED", default=30)
MODEL_ACTIVE_CACHE_S = env.int("MODEL_ACTIVE_CACHE_S", default=10)
FER2013_ROOT = env_path("FER2013_ROOT", BASE_DIR.parent / "shared" / "datasets" / "fer2013")
MODEL_FINETUNE_TIME_LIMIT = env.int("MODEL_FINETUNE_TIME_LIMIT", default=3600)

# --- DRF ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: anonymous API calls get 401 with a WWW-Authenticate header
        "config.auth.TokenAuthentication",  # knox's, see config.auth
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON bounded in size and depth (deep nesting is a RecursionError in json, a 500)
    "DEFAULT_PARSER_CLASSES": [
        "config.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "config.api.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
        "rest_framework.throttling.ScopedRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON", default="120/min"),
        "user": env.str("THROTTLE_USER", default="3000/min"),
        "auth": env.str("THROTTLE_AUTH", default="30/min"),
        # per target mailbox (config.password_reset)
        "password_reset": env.str("THROTTLE_PASSWORD_RESET", default="5/hour"),
    },
    # Reverse proxies in front of the server that append to X-Forwarded-For. 0: ignore the header
    # (a client can write anything there) and throttle by REMOTE_ADDR; N: the Nth address from
    # the right, the one the outermost of your N proxies appended.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
}
if REST_FRAMEWORK["NUM_PROXIES"] < 0:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"NUM_PROXIES must be 0 or more, not {REST_FRAMEWORK['NUM_PROXIES']}"
    )
# API tokens (`Authorization: Token <key>`): knox keeps only a SHA-512 digest of each key, so
# a key is shown once, when made. Absolute lifetime, no sliding renewal: a script signs in
# again, and a leaked key is dead by the next school day whatever it is used for.
API_TOKEN_TTL_HOURS = env.float("API_TOKEN_TTL_HOURS", default=10.0)
API_TOKEN_LIMIT_PER_USER = env.int("API_TOKEN_LIMIT_PER_USER", default=10)
if API_TOKEN_TTL_HOURS <= 0 or API_TOKEN_LIMIT_PER_USER < 1:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "API_TOKEN_TTL_HOURS must be more than 0 and API_TOKEN_LIMIT_PER_USER at least 1"
    )
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=API_TOKEN_TTL_HOURS),
    "AUTO_REFRESH": False,
    "AUTH_HEADER_PREFIX": "Token",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Classroom affect analytics API",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # /api/schema/ and /api/docs/: signed in (session) or an API token; nothing in the API is
    # for anonymous callers but the token endpoint, so neither is its description
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "PATH_CONVERTER_OVERRIDES": {
        "id": {"type": "integer", "minimum": 0, "maximum": 999_999_999_999_999_999}
    },
    "SWAGGER_UI_DIST": "SIDECAR",  # served from our static files: no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- email: password reset links (config.password_reset) ---------------------------------------
# e.g. smtp+tls://user:password@mail.example.org:587 (django-environ's email URL). Unset: no
# email is sent anywhere, and the reset page says to ask a teacher or an administrator.
EMAIL_URL = env.str("EMAIL_URL", default="")
PASSWORD_RESET_BY_EMAIL = bool(EMAIL_URL)
if EMAIL_URL:
    globals().update(env.email_url("EMAIL_URL"))  # EMAIL_BACKEND, EMAIL_HOST, EMAIL_PORT, ...
else:
    EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="webmaster@localhost")

# --- cache (throttling, short-lived state) ------------------------------------------------------
if REDIS_URL:
    from config.redis_clients import cache_options

    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": cache_options(),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- security -------------------------------------------------------------------------------
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # plain-HTTP health probes get their answer, not a 301
# Only behind a TLS-terminating proxy that sets X-Forwarded-Proto itself: otherwise any client
# can claim HTTPS with that header (secure cookies, no redirect, CSRF origin checks).
TRUST_X_FORWARDED_PROTO = env.bool("TRUST_X_FORWARDED_PROTO", default=False)
if TRUST_X_FORWARDED_PROTO:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# Content-Security-Policy (unset or "on": this one; "off": none; any other value: sent as it
# is). The pages load scripts and styles only from our static files (no inline
# script, style or event handler; page data in json_script blocks, which are not run); the
# recorder draws the webcam into a canvas and sends blobs over a WebSocket; the dashboards
# fetch JSON and open WebSockets on this host (ws:/wss: since older Safari does not count them
# as 'self'). The admin's pages need nothing more; the Swagger UI adds the hash of its one
# inline <style> (config.urls). On by default; CONTENT_SECURITY_POLICY=off sends none. The
# middleware is config.csp.
DEFAULT_CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self' ws: wss:",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "form-action 'self'",
    ]
)
CONTENT_SECURITY_POLICY = env.str("CONTENT_SECURITY_POLICY", default="on").strip()
if CONTENT_SECURITY_POLICY.lower() in ("on", ""):
    CONTENT_SECURITY_POLICY = DEFAULT_CONTENT_SECURITY_POLICY
elif CONTENT_SECURITY_POLICY.lower() == "off":
    CONTENT_SECURITY_POLICY = ""


def _loopback_host(host: str) -> bool:
    """A name only this machine answers to: localhost (and *.localhost), 127.0.0.0/8, ::1,
    or the test client's testserver."""
    import ipaddress

    host = host.lower().strip("[]").lstrip("*").lstrip(".")
    if host in ("localhost", "testserver") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _served_locally_only() -> bool:
    """The server can only be used from this machine: `make run` (http://127.0.0.1:8000/), the
    test suite, the image build. Every ALLOWED_HOSTS and CSRF_TRUSTED_ORIGINS entry is a
    loopback name and nothing says HTTPS or a proxy. A deployment that people log into from
    elsewhere cannot look like this: a browser elsewhere sends a Host that is not loopback (400
    unless in ALLOWED_HOSTS), and a proxy that rewrites Host to the upstream address still
    needs CSRF_TRUSTED_ORIGINS for the login form's POST."""
    from urllib.parse import urlsplit

    return (
        all(_loopback_host(h) for h in ALLOWED_HOSTS)
        and all(_loopback_host(urlsplit(o).hostname or "") for o in CSRF_TRUSTED_ORIGINS)
        and not (SECURE_SSL_REDIRECT or SECURE_HSTS_SECONDS or TRUST_X_FORWARDED_PROTO)
    )


SERVED_LOCALLY_ONLY = _served_locally_only()

# Secure cookies whenever DEBUG is off, except where the server is only reachable as a loopback
# name over plain HTTP (`make run`): Chromium and Firefox keep Secure cookies on
# http://127.0.0.1 and http://localhost, but Safari drops them (WebKit bug 281149), so signing
# in would fail there; and over loopback the cookie never crosses a network anyway.
_COOKIE_SECURE_DEFAULT = not DEBUG and not SERVED_LOCALLY_ONLY
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=_COOKIE_SECURE_DEFAULT)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=_COOKIE_SECURE_DEFAULT)

# A weak SECRET_KEY lets anyone forge session cookies and password-reset links. With DEBUG off,
# a server others can reach refuses to start with one (`make run` generates a 67-character key
# into DATA_DIR/secret_key; the test suite and the image build use short ones, and are served
# locally only). The same rule as `check --deploy` (security.W009), plus known placeholders.
_PLACEHOLDER_SECRET_KEYS = {
    "insecure-dev-only-key-set-secret_key-in-production",  # the DEBUG default above
    "test-secret-key-not-for-production",  # scripts/test.sh
    "browser-tests",
    "bench-only-secret",
    "build",  # docker/Dockerfile's collectstatic
    "changeme",
    "change-me",
    "secret",
    "…",
    "...",
}


def _weak_secret_key(key: str) -> str | None:
    if key.lower() in _PLACEHOLDER_SECRET_KEYS or key.startswith("django-insecure-"):
        return "is a known placeholder"
    if len(key) < 50:
        return f"has {len(key)} characters (at least 50 needed)"
    if len(set(key)) < 5:
        return "has fewer than 5 different characters"
    return None


if not DEBUG and not SERVED_LOCALLY_ONLY and (_weakness := _weak_secret_key(SECRET_KEY)):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"SECRET_KEY {_weakness}: with DEBUG off, on a server other machines can reach "
        "(ALLOWED_HOSTS or CSRF_TRUSTED_ORIGINS name more than loopback, or HTTPS or proxy "
        "settings are on), it must be long and random, e.g. "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATICFILES_DIRS = [BASE_DIR / "static"]

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # a 403 is one line (path, user, reason), not a traceback
    "filters": {"forbidden_one_line": {"()": "config.logs.ForbiddenOneLine"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "django.request": {"filters": ["forbidden_one_line"]},
        "django.security.csrf": {"filters": ["forbidden_one_line"]},
    },
}

# --- frame ingestion and inference ----------------------------------------------------------
EMOTION_LIMITS = {
    "max_frame_bytes": env.int("FRAME_MAX_BYTES", default=2 * 1024 * 1024),
    "max_request_bytes": env.int("FRAME_MAX_REQUEST_BYTES", default=24 * 1024 * 1024),
    "max_frames_per_request": env.int("FRAME_MAX_PER_REQUEST", default=50),
    # 1080p webcams send 1920 px at most (the recorder sends 640): a worker decodes each frame
    # in colour at full size, so this bounds a 32-frame batch to ~350 MB (4096 px: ~1.6 GB)
    "max_side": env.int("FRAME_MAX_SIDE", default=1920),
    "max_clock_skew_s": env.int("FRAME_MAX_CLOCK_SKEW_SECONDS", default=300),
    # REST uploads: a session's frames waiting for inference (each held in the frame store)
    "max_pending_per_session": env.int("FRAME_MAX_PENDING_PER_SESSION", default=200),
}
# Every request body but an authenticated frame upload's (config.bodylimit: refused with 413
# before it is read or parsed)
REQUEST_MAX_BYTES = env.int("REQUEST_MAX_BYTES", default=1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = EMOTION_LIMITS["max_request_bytes"]
FILE_UPLOAD_MAX_MEMORY_SIZE = EMOTION_LIMITS["max_frame_bytes"]
DATA_UPLOAD_MAX_NUMBER_FILES = EMOTION_LIMITS["max_frames_per_request"] + 10
# an open session that took no frame for this long is ended (reason "idle") by the periodic
# job: a closed tab or a sleeping laptop never says goodbye
SESSION_IDLE_MINUTES = env.int("SESSION_IDLE_MINUTES", default=60)
if SESSION_IDLE_MINUTES < 1:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("SESSION_IDLE_MINUTES must be at least 1")
INFERENCE_BATCH_SIZE = env.int("INFERENCE_BATCH_SIZE", default=32)  # frames per task (N)
INFERENCE_BATCH_WAIT_MS = env.int("INFERENCE_BATCH_WAIT_MS", default=200)  # or T ms
STREAM_MAX_IN_FLIGHT = env.int("STREAM_MAX_IN_FLIGHT", default=4)  # credit window per socket
# all sockets of one server process together. Embedded, nothing else bounds the queue: about
# 1-2 s of the in-process inference. With Redis the workers' measured room bounds it
# (STREAM_QUEUE_SECONDS), and granted credit is reserved per socket, so this must cover the
# process's sockets (hundreds of crop learners), or they skip frames while workers idle
STREAM_MAX_IN_FLIGHT_TOTAL = env.int("STREAM_MAX_IN_FLIGHT_TOTAL", default=48 if EMBEDDED else 512)
# cues frames need no worker: their credit is this process's own, bounded by the cues its
# batcher holds unwritten (a few KB each); past this many, cues frames are dropped
STREAM_MAX_PENDING_CUES = env.int("STREAM_MAX_PENDING_CUES", default=1024)
# with Redis: frames waiting for inference (all processes) are held to this many seconds of the
# workers' measured rate; past saturation stream credit is granted only as frames are analysed
STREAM_QUEUE_SECONDS = env.float("STREAM_QUEUE_SECONDS", default=1.0)
# with Redis: an instructor's live view gets at most one course summary per this many ms (the
# newest); 0 sends one per inference batch, as without Redis
LIVE_PUSH_INTERVAL_MS = env.int("LIVE_PUSH_INTERVAL_MS", default=500)
LIVE_WINDOW_SECONDS = env.float("LIVE_WINDOW_SECONDS", default=10.0)
# label review: the share (0-1) of reviewable readings, picked by a hash of their id, that
# take a second, blind review, so reviewer agreement is measured on an unbiased subset
REVIEW_SECOND_SHARE = env.float("REVIEW_SECOND_SHARE", default=0.2)
if not 0.0 <= REVIEW_SECOND_SHARE <= 1.0:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"REVIEW_SECOND_SHARE must be between 0 and 1, not {REVIEW_SECOND_SHARE}"
    )
# Failure-injection for tests only: sleep inside a batch before it commits.
INFERENCE_TEST_DELAY_SECONDS = env.float("INFERENCE_TEST_DELAY_SECONDS", default=0.0)


def _frame_timing_problem() -> str | None:
    """Why the frame TTL, task time limits, visibility timeout and re-queue settings cannot
    work together (a dead worker's frames would expire before they run again), or None."""
    hard, soft = CELERY_TASK_TIME_LIMIT, CELERY_TASK_SOFT_TIME_LIMIT
    opts = CELERY_BROKER_TRANSPORT_OPTIONS
    visibility = opts["visibility_timeout"]
    sweep = opts["unacked_restore_interval"] * opts["unacked_restore_throttle"]
    requeue = FRAME_REQUEUE_AFTER_SECONDS + FRAME_REQUEUE_INTERVAL_SECONDS
    if min(FRAME_TTL_SECONDS, hard, visibility, FRAME_REQUEUE_INTERVAL_SECONDS) <= 0:
        return (
            "FRAME_TTL_SECONDS, CELERY_TASK_TIME_LIMIT, CELERY_VISIBILITY_TIMEOUT and "
            "FRAME_REQUEUE_INTERVAL_SECONDS must be positive"
        )
    if soft and soft >= hard:
        return f"CELERY_TASK_SOFT_TIME_LIMIT ({soft}) must be below CELERY_TASK_TIME_LIMIT ({hard})"
    if visibility + sweep + hard > FRAME_TTL_SECONDS:
        return (
            f"a batch whose worker died is redelivered after CELERY_VISIBILITY_TIMEOUT "
            f"({visibility}) + the unacked scan (CELERY_UNACKED_RESTORE_INTERVAL × THROTTLE = "
            f"{sweep}) and may run CELERY_TASK_TIME_LIMIT ({hard}) s: {visibility + sweep + hard} s "
            f"is past FRAME_TTL_SECONDS ({FRAME_TTL_SECONDS}), so its frames would expire unanalysed"
        )
    if requeue + hard > FRAME_TTL_SECONDS:
        return (
            f"a frame whose message was lost is queued again after FRAME_REQUEUE_AFTER_SECONDS + "
            f"FRAME_REQUEUE_INTERVAL_SECONDS ({requeue}) and may run CELERY_TASK_TIME_LIMIT "
            f"({hard}) s: {requeue + hard} s is past FRAME_TTL_SECONDS ({FRAME_TTL_SECONDS})"
        )
    return None


if _problem := _frame_timing_problem():
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(_problem)
