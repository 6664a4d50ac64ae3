"""API plumbing shared by the apps: one error body shape (DRF views and Django's error pages
under /api/), a CSV renderer, pagination.

Every string an error body carries is clipped to ``MAX_ECHO_CHARS`` (:func:`bounded`): messages
quote what the client sent (``not a valid date: '…'``), and a 100 KB field must not come back
twice over (message and details) in a 200 KB error."""

from __future__ import annotations

import csv
import io
import logging
import re
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import (
    BadRequest,
    DisallowedHost,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.views import defaults
from rest_framework import exceptions, pagination
from rest_framework.renderers import BaseRenderer
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    """Every error: ``{"error": {"status", "code", "message", "details"}}``.

    Django's ValidationError/PermissionDenied raised by services map to 400/403, and the
    SuspiciousOperation errors Django's request parsing raises (too many files or fields, too
    big a body), which DRF's parsers let through, to 400/413 instead of Django's HTML page.
    """
    if isinstance(exc, SuspiciousOperation):
        exc = _suspicious_request(exc, context)
    if is_outage(exc):
        exc = _unavailable(exc)
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        exc = _throttled_instead(exc, context)
    if isinstance(exc, DjangoValidationError):
        detail = (
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(exc, exceptions.ValidationError):
        message = _first_message(data)
        details = data
        code = "invalid"
    else:
        message = str(data.get("detail", "")) if isinstance(data, dict) else str(data)
        details = None
        code = getattr(getattr(exc, "detail", None), "code", None) or getattr(
            exc, "default_code", "error"
        )
    if isinstance(exc, ServiceUnavailable):
        response["Retry-After"] = str(OUTAGE_RETRY_AFTER_S)
    response.data = error_body(response.status_code, code, message, details)
    return response


def _throttled_instead(exc, context):
    """429 instead of 401 for a caller past the anonymous rate (``THROTTLE_ANON``).

    DRF authenticates and checks permissions before it throttles, so a caller with no or a bad
    token was told 401 forever and never counted. The refused request is counted here, by the
    view's own throttles, as the anonymous caller it now is (DRF leaves an AnonymousUser on a
    request whose authentication failed); authenticated callers never get here.
    """
    view, request = context.get("view"), context.get("request")
    if view is None or request is None:
        return exc
    try:
        view.check_throttles(request)
    except exceptions.Throttled as throttled:
        return throttled
    return exc


# Long enough for any message the product writes itself, short enough that echoed input stays
# a hint of what was sent rather than a copy of it.
MAX_ECHO_CHARS = 200


def clip(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """``text``, cut to ``limit`` characters with an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bounded(value):
    """``value`` with every string in it (dict keys and values, list items, recursively)
    clipped by :func:`clip`; numbers, booleans and None unchanged."""
    if isinstance(value, str):
        return clip(str(value))  # str(): a DRF ErrorDetail renders as its text
    if isinstance(value, dict):
        return {bounded(k) if isinstance(k, str) else k: bounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [bounded(v) for v in value]
    return value


def error_body(status: int, code: str, message: str, details=None) -> dict:
    """``{"error": {"status", "code", "message", "details"}}``, every string in it bounded."""
    error = {"status": status, "code": code, "message": message, "details": details}
    return {"error": bounded(error)}


# --- Django's error pages (handler400/403/404/500 in config.urls) -----------------------------


def _is_api(request) -> bool:
    return request.path_info == "/api" or request.path_info.startswith("/api/")


def error_response(status: int, code: str, message: str, details=None) -> JsonResponse:
    """The API's error body, for errors that happen outside a DRF view."""
    return JsonResponse(error_body(status, code, message, details), status=status)


def bad_request(request, exception):
    """400 outside a view (e.g. a Host header not in ALLOWED_HOSTS): JSON under /api/, with
    the reason."""
    if _is_api(request):
        return error_response(400, "bad_request", _bad_request_reason(exception))
    return defaults.bad_request(request, exception)


def _bad_request_reason(exc) -> str:
    if isinstance(exc, DisallowedHost):  # its own text tells how to change ALLOWED_HOSTS
        return "the Host header names a host this server does not answer to"
    if isinstance(exc, MultiPartParserError):
        return f"Multipart form parse error - {exc}"  # as DRF's parser says it
    if isinstance(exc, BadRequest):
        return str(exc) or "Bad request."
    return "malformed or suspicious request"


def permission_denied(request, exception):
    if _is_api(request):
        return error_response(403, "permission_denied", str(exception) or "Permission denied.")
    return defaults.permission_denied(request, exception)


def page_not_found(request, exception):
    """404 for a path no URL pattern matches (``/api/sessions/abc/``): JSON under /api/, like
    the 404s views raise, the HTML page elsewhere."""
    if _is_api(request):
        return error_response(404, "not_found", "Not found.")
    return defaults.page_not_found(request, exception)


def server_error(request):
    """500 for an unhandled exception: JSON under /api/ (no detail: it is logged), HTML
    elsewhere."""
    if _is_api(request):
        return error_response(500, "server_error", "A server error occurred.")
    return defaults.server_error(request)


class RequestRejected(exceptions.APIException):
    """A request Django's parser refused to read on (see :func:`_suspicious_request`)."""

    status_code = 400
    default_code = "bad_request"

    def __init__(self, detail: str, code: str, status_code: int = 400):
        super().__init__(detail, code)
        self.status_code = status_code


def _max_files_per_request() -> int:
    """The most files a request may carry: the frame upload's limit (the one endpoint that takes
    files), and never more than Django's parser reads (``DATA_UPLOAD_MAX_NUMBER_FILES``)."""
    limits = [settings.DATA_UPLOAD_MAX_NUMBER_FILES]
    limits.append(getattr(settings, "EMOTION_LIMITS", {}).get("max_frames_per_request"))
    return min(x for x in limits if x is not None)


def too_many_files() -> RequestRejected:
    """400 ``too_many_files``: the same error whether Django's parser stopped reading
    (``DATA_UPLOAD_MAX_NUMBER_FILES``) or the upload view counted more than its limit."""
    n = _max_files_per_request()
    return RequestRejected(f"too many files: at most {n} per request", "too_many_files")


def _suspicious_request(exc: SuspiciousOperation, context) -> RequestRejected:
    if isinstance(exc, TooManyFilesSent):
        rejected = too_many_files()
    elif isinstance(exc, TooManyFieldsSent):
        n = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        rejected = RequestRejected(
            f"too many form fields: at most {n} per request", "too_many_fields"
        )
    elif isinstance(exc, RequestDataTooBig):
        n = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        rejected = RequestRejected(
            f"request body exceeds the limit of {n} bytes (form fields other than files)",
            "request_too_large",
            413,
        )
    else:
        rejected = RequestRejected("malformed or suspicious request", "bad_request")
    # Django's own handler logs these to django.security.<name>; so do we.
    request = getattr(context.get("request"), "_request", None)
    logging.getLogger(f"django.security.{exc.__class__.__name__}").warning(
        "%s", exc, extra={"status_code": rejected.status_code, "request": request}
    )
    return rejected


# --- a backing service away (Redis: frame store, broker, cache; the database) ---------------

#: seconds a client is asked to wait when a backing service is away (a Redis restart takes
#: a few seconds)
OUTAGE_RETRY_AFTER_S = 5


class ServiceUnavailable(exceptions.APIException):
    status_code = 503
    default_code = "service_unavailable"
    default_detail = "a service the server needs is unavailable: retry shortly"


def outage_errors() -> tuple[type[BaseException], ...]:
    """What the clients raise when their service is away: Redis (frame store, cache, channel
    layer), the Celery broker (kombu), the database."""
    from django.db import InterfaceError, OperationalError
    from kombu.exceptions import OperationalError as BrokerError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (RedisConnectionError, RedisTimeoutError, BrokerError, OperationalError, InterfaceError)


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, outage_errors())


def _unavailable(exc: BaseException) -> ServiceUnavailable:
    # a real outage, worth a line in the log; the traceback adds nothing
    logging.getLogger("config.api").warning("503: %s: %s", type(exc).__name__, exc)
    return ServiceUnavailable()


def _first_message(data) -> str:
    if isinstance(data, dict):
        for k, v in data.items():
            m = _first_message(v)
            return m if k == "non_field_errors" else f"{k}: {m}"
    if isinstance(data, list) and data:
        return _first_message(data[0])
    return str(data)


class CSVRenderer(BaseRenderer):
    """Renders a list of flat dicts (or ``{"rows": [...], "columns": [...]}``: then those
    columns, in that order, header included when there is no row) as CSV; ``?format=csv``."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, dict) and "error" in data:
            rows = [{"error": data["error"]["message"], "status": data["error"]["status"]}]
        else:
            rows = data.get("rows", []) if isinstance(data, dict) else data
        columns = data.get("columns") if isinstance(data, dict) and "error" not in data else None
        buf = io.StringIO()
        keys = list(columns or dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: csv_safe(v) for k, v in row.items()} for row in rows)
        return buf.getvalue().encode(self.charset)


# A cell a spreadsheet would read as a formula (OWASP "CSV injection"), unless the whole cell is
# a plain number such as "-0.5", which is harmless and stays a number.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_safe(value):
    """The cell value, with a ``'`` put before text that starts like a formula.

    Numbers (int, float, Decimal, bool) are returned unchanged, negative ones included.
    """
    if value is None or isinstance(value, (int, float, Decimal)):
        return value
    text = str(value)
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return value


class Pagination(pagination.PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
