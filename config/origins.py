"""Which pages may open this server's WebSockets: its own origin, or a CSRF_TRUSTED_ORIGINS entry.

A browser sends the session cookie with a WebSocket handshake whatever page opens it, so the
Origin header is all that stops another site from streaming or watching as the signed-in user.
channels' ``AllowedHostsOriginValidator`` compares only the host name with ALLOWED_HOSTS: a page
at ``http://localhost:9999`` or ``https://127.0.0.1`` passed for a server at
``http://127.0.0.1:8000``. Here scheme, host and port must all match: the origin the socket's
own Host header gives (``ws`` → ``http``, ``wss`` → ``https``, or what a trusted TLS proxy's
X-Forwarded-Proto says), for a Host that ALLOWED_HOSTS allows, or one CSRF_TRUSTED_ORIGINS
entry exactly, as the login form's CSRF check takes it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]  # scheme, host (lower case), port


def parse_origin(value: str) -> Origin | None:
    """``(scheme, host, port)`` of an ``http(s)://host[:port]`` origin; None for anything
    else (``null``, another scheme, a path, a malformed port)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username or parts.password:
        return None
    return parts.scheme, parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme]


def _headers(scope) -> dict[bytes, str]:
    return {k.lower(): v.decode("latin1") for k, v in scope.get("headers", [])}


def _scheme(scope, headers: dict[bytes, str]) -> str:
    """The page scheme a same-origin page has, as Django's ``request.scheme`` decides it."""
    proto = headers.get(b"x-forwarded-proto")
    if settings.TRUST_X_FORWARDED_PROTO and proto is not None:
        return "https" if proto.split(",", 1)[0].strip() == "https" else "http"
    return "https" if scope.get("scheme") in ("wss", "https") else "http"


def own_origin(scope) -> Origin | None:
    """The origin of a page this server served, from the handshake's Host header; None when
    that host is not one ALLOWED_HOSTS allows (a DNS-rebound name, say)."""
    headers = _headers(scope)
    host = headers.get(b"host", "")
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # as Django's request.get_host()
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, allowed):
        return None
    return parse_origin(f"{_scheme(scope, headers)}://{host}")


def origin_allowed(scope) -> bool:
    """Whether this WebSocket handshake may go on.

    Without an Origin header (not a browser: scripts, the benchmarks' clients) it goes on only
    where ALLOWED_HOSTS holds ``*``, as under channels' validator before."""
    origin = _headers(scope).get(b"origin")
    if origin is None:
        return "*" in settings.ALLOWED_HOSTS
    parsed = parse_origin(origin)
    if parsed is None:
        return False
    if parsed == own_origin(scope):
        return True
    return any(parsed == parse_origin(o) for o in settings.CSRF_TRUSTED_ORIGINS)


class OriginValidator:
    """ASGI middleware for the WebSocket router: a handshake whose Origin is not allowed
    (``origin_allowed``) is refused (HTTP 403) before anything else sees it."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            raise ValueError("OriginValidator guards WebSocket connections only")
        if origin_allowed(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
