"""API plumbing shared by the apps: one error body shape, a CSV renderer, pagination."""

from __future__ import annotations

import csv
import io

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, pagination
from rest_framework.renderers import BaseRenderer
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    """Every error: ``{"error": {"status", "code", "message", "details"}}``.

    Django's ValidationError/PermissionDenied raised by services map to 400/403.
    """
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
    response.data = {
        "error": {
            "status": response.status_code,
            "code": code,
            "message": message,
            "details": details,
        }
    }
    return response


def _first_message(data) -> str:
    if isinstance(data, dict):
        for k, v in data.items():
            m = _first_message(v)
            return m if k == "non_field_errors" else f"{k}: {m}"
    if isinstance(data, list) and data:
        return _first_message(data[0])
    return str(data)


class CSVRenderer(BaseRenderer):
    """Renders a list of flat dicts (or ``{"rows": [...]}``) as CSV; selected by ``?format=csv``."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, dict) and "error" in data:
            rows = [{"error": data["error"]["message"], "status": data["error"]["status"]}]
        else:
            rows = data.get("rows", []) if isinstance(data, dict) else data
        buf = io.StringIO()
        keys = list(dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue().encode(self.charset)


class Pagination(pagination.PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
