"""Request parameters shared by the apps' APIs and pages: dates, date ranges, pages."""

from __future__ import annotations

from datetime import UTC, datetime, time

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from rest_framework.exceptions import ValidationError

from config.api import Pagination, clip


def paginated(request, view, queryset, serializer_class, context=None):
    paginator = Pagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    data = serializer_class(page, many=True, context=context or {"request": request}).data
    return paginator.get_paginated_response(data)


def when_from_text(value: str) -> datetime:
    """An ISO datetime, or a date (its midnight), as an aware datetime in UTC; ``ValueError``
    with a message for the client otherwise.

    A value without an offset is in the server's time zone. UTC because an offset ISO allows
    may be one the database refuses (PostgreSQL takes at most ±15:59; ``-23:00`` was a 500),
    and the value must have a UTC equivalent: ``9999-12-31T23:59:59-23:00`` is a valid ISO
    time, but in UTC it falls in year 10000, which neither Python nor the database can hold.
    """
    try:
        dt = parse_datetime(value)
        d = parse_date(value) if dt is None else None
    except ValueError:  # well-formed but impossible, e.g. 2026-02-30, or an offset of 24 h
        raise ValueError(f"not a valid date: {value!r}") from None
    if dt is None:
        if d is None:
            raise ValueError(f"not a date or datetime: {value!r}")
        dt = datetime.combine(d, time.min)
    try:
        if dt.tzinfo is None:
            dt = timezone.make_aware(dt)
        return dt.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"out of range: {value!r} is before year 1 or after 9999 in UTC") from None


def parse_when(value: str | None, name: str) -> datetime | None:
    """:func:`when_from_text` for the request field ``name``: ``None`` when missing or empty,
    a 400 (``{name: message}``) when not a usable date or datetime."""
    if not value:
        return None
    try:
        return when_from_text(value)
    except ValueError as e:
        raise ValidationError({name: str(e)}) from None


def parse_range(params) -> tuple[datetime | None, datetime | None]:
    """``from`` and ``to`` query parameters as a half-open range ``[from, to)``.

    Either may be missing; when both are given, ``to`` must be later than ``from`` (a reversed
    or empty range is a client error, not an empty report).
    """
    raw_from, raw_to = params.get("from"), params.get("to")
    date_from, date_to = parse_when(raw_from, "from"), parse_when(raw_to, "to")
    if date_from is not None and date_to is not None and date_to <= date_from:
        raise ValidationError(
            {
                "to": f"must be later than from (from={raw_from}, to={raw_to}): the range "
                "includes from and excludes to"
            }
        )
    return date_from, date_to


def error_text(exc: ValidationError) -> str:
    """A validation error's messages as plain text: ``"from: not a valid date: '…'"``."""

    def walk(detail, prefix=""):
        if isinstance(detail, dict):
            for k, v in detail.items():
                yield from walk(v, "" if k == "non_field_errors" else f"{k}: ")
        elif isinstance(detail, list):
            for v in detail:
                yield from walk(v, prefix)
        else:
            yield f"{prefix}{detail}"

    return clip("; ".join(walk(exc.detail)))
