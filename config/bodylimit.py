"""Request bodies are bounded before anything buffers or parses them.

An ASGI middleware in front of Django: a request whose Content-Length exceeds its route's limit
is answered 413 before a byte of its body is read; a body without one (chunked) is counted as
it arrives and refused the moment it passes the limit. Django then never sees it, so it never
spools it to disk or parses it as multipart. Only a request that carries credentials (a session
cookie or an Authorization header, checked later by the view) may send a frame upload's large
body; everyone else gets the small limit, so an anonymous client cannot make the server read
megabytes.
"""

from __future__ import annotations

import json
import re

from django.conf import settings

FRAME_UPLOAD = re.compile(r"^/api/sessions/\d+/frames/?$")


def body_limit(scope) -> int:
    """The most body bytes this request may send."""
    if (
        scope["method"] == "POST"
        and FRAME_UPLOAD.match(scope["path"])
        and _carries_credentials(scope)
    ):
        return settings.EMOTION_LIMITS["max_request_bytes"]
    return settings.REQUEST_MAX_BYTES


def _carries_credentials(scope) -> bool:
    cookie_name = settings.SESSION_COOKIE_NAME.encode() + b"="
    for name, value in scope.get("headers", ()):
        if name == b"authorization" or (name == b"cookie" and cookie_name in value):
            return True
    return False


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send, limit: int) -> None:
    message = f"request body exceeds the limit of {limit} bytes for this route"
    body = json.dumps(
        {
            "error": {
                "status": 413,
                "code": "request_too_large",
                "message": message,
                "details": {"limit": limit},
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = body_limit(scope)
        length = _content_length(scope)
        if length is not None and length > limit:
            return await _send_413(send, limit)
        seen, over, started = 0, False, False

        async def counted_receive():
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # the application is told the client went away: Django drops the request
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted_receive, tracked_send)
        if over and not started:
            await _send_413(send, limit)
