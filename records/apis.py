"""Thin REST views of what is kept about learners: timelines and reports (JSON or CSV), the
learner's export and erasure of their own data."""

from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import CSVRenderer
from config.formats import csv_number
from config.params import parse_range
from ml.classes import EMOTIONS
from ml.engagement import BANDS, DEVICE_KEYS
from records import selectors, services
from tutoring.selectors import (
    course_get,
    course_is_managed_by,
    session_emotion_visible,
    session_get,
)

WINDOW_PARAM = OpenApiParameter(
    "window",
    float,
    description="window length in seconds (5–3600); a session longer than "
    f"{selectors.MAX_TIMELINE_WINDOWS} windows gets a whole multiple of it (the response's "
    "window_s)",
)


class SessionTimelineApi(APIView):
    @extend_schema(
        parameters=[WINDOW_PARAM],
        responses=inline_serializer(
            "Timeline",
            {
                "session": serializers.IntegerField(),
                "window_s": serializers.FloatField(),
                "emotion_enabled": serializers.BooleanField(),
                "windows": serializers.ListField(child=serializers.DictField()),
                "gaps": serializers.ListField(child=serializers.DictField()),
            },
        ),
    )
    def get(self, request, session_id: int):
        session = session_get(user=request.user, session_id=session_id)
        # window_s is the one used: wider than asked for a very long session (see the selector)
        timeline = selectors.session_timeline_data(session=session, window_s=_window_param(request))
        return Response(
            {
                "session": session.pk,
                "window_s": timeline["window_s"],
                "emotion_enabled": session_emotion_visible(session),
                "windows": timeline["windows"],
                "gaps": timeline["gaps"],
            }
        )


def _window_param(request) -> float:
    raw = request.query_params.get("window", "10")
    try:
        window = float(raw)
    except ValueError:
        raise ValidationError({"window": f"not a number: {raw!r}"}) from None
    if not 5 <= window <= 3600:
        raise ValidationError({"window": "must be between 5 and 3600 seconds"})
    return window


def flatten(row: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in row.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}_"))
        else:
            out[key] = v
    return out


def csv_row(row: dict) -> dict:
    """A flat report row with its numbers at the CSV's documented precision (the JSON keeps
    full precision): ``config.formats.csv_number``."""
    return {k: csv_number(k, v) for k, v in row.items()}


class SessionReportApi(APIView):
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, CSVRenderer]

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=["json", "csv"])],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request, session_id: int):
        session = session_get(user=request.user, session_id=session_id)
        report = selectors.session_report(session=session)
        if request.accepted_renderer.format == "csv":
            row = flatten(report)
            if report["band_share"]:  # a band no window reached has a share of 0
                row.update({f"band_share_{b}": report["band_share"].get(b, 0.0) for b in BANDS})
            return Response(
                {"rows": [csv_row(row)], "columns": session_report_columns(session.course)},
                headers=_attachment(f"session-{session.pk}.csv"),
            )
        return Response(report)


class CourseReportApi(APIView):
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, CSVRenderer]

    @extend_schema(
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATETIME),
            OpenApiParameter("to", OpenApiTypes.DATETIME),
            OpenApiParameter("format", str, enum=["json", "csv"]),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request, course_id: int):
        course = course_get(user=request.user, course_id=course_id)
        if not course_is_managed_by(course=course, user=request.user):
            raise PermissionDenied("course reports are for the course's instructors")
        date_from, date_to = parse_range(request.query_params)
        report = selectors.course_report(course=course, date_from=date_from, date_to=date_to)
        if request.accepted_renderer.format == "csv":
            rows = [csv_row(flatten(r)) for r in report["learners"]]
            return Response(
                {"rows": rows, "columns": course_report_columns(course)},
                headers=_attachment(f"course-{course.pk}-report.csv"),
            )
        return Response(report)


def session_report_columns(course) -> list[str]:
    """The session report CSV's columns: the same for every session of a course, with frames
    or without, so files of several sessions line up (empty cells where there is no value; the
    device path's cues, ``DEVICE_KEYS``, are empty where no frame came from it)."""
    cols = ["session", "learner", "learner_name", "course", "status", "started_at", "ended_at"]
    cols += ["duration_s"]
    cols += ["emotion_enabled", "n_frames", "presence_ratio", "attention_ratio", "engagement"]
    cols += ["band", *DEVICE_KEYS]
    if course.emotion_inference_enabled:
        cols += [f"emotion_distribution_{e}" for e in EMOTIONS]
        cols += ["dominant_emotion", "valence", "uncertain_ratio"]
    return cols + [f"band_share_{b}" for b in BANDS]


def course_report_columns(course) -> list[str]:
    """The course report CSV's columns: the same for every row and every request (a learner
    without frames has empty emotion cells, an empty report still has its header)."""
    cols = ["learner", "learner_name", "learner_id", "sessions", "duration_s", "n_frames"]
    cols += ["presence_ratio", "attention_ratio", "engagement", "band", *DEVICE_KEYS]
    if course.emotion_inference_enabled:
        cols += [f"emotion_distribution_{e}" for e in EMOTIONS]
        cols += ["dominant_emotion", "valence", "uncertain_ratio"]
    return cols


def _attachment(name: str) -> dict:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


# --- the learner's own data ----------------------------------------------------------------------


class MeExportApi(APIView):
    """The caller's data (``selectors.learner_export``) as one JSON document, streamed.

    The bytes are those DRF's JSONRenderer writes for the whole document (compact, the same
    dates and escapes), but only ``user``, ``enrollments``, ``consents`` and ``sessions`` are
    rendered up front; the readings follow one at a time as they are read, so the process holds
    a chunk of them, not the learner's history.
    """

    #: JSON bytes of readings gathered into one piece of the body: each piece is one hop to
    #: the request's thread under ASGI, and bounds what is held besides the rows of a chunk
    piece_bytes = 64 * 1024

    class Stream(StreamingHttpResponse):
        """A streaming response that an ASGI server also gets piece by piece.

        Django's ASGI handler reads a synchronous body with ``sync_to_async(list)``: all of it
        in memory before the first byte goes out. Here each piece is pulled with its own
        thread-sensitive ``sync_to_async`` call, so on the thread the view ran on, whose
        database connection holds the readings' cursor (the handler closes the response on
        that thread too, also when the client goes away mid-download). Synchronous consumers
        (the test client) iterate it as any streaming response.
        """

        async def __aiter__(self):
            pieces = iter(self.streaming_content)
            pull = sync_to_async(next, thread_sensitive=True)
            while (piece := await pull(pieces, None)) is not None:
                yield piece

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        export = selectors.learner_export(learner=request.user)
        readings = export.pop("readings")  # nothing read yet
        head = JSONRenderer().render(export)  # '{"user":…,"sessions":[…]}'
        return self.Stream(
            self._body(head, readings, request.user.username),
            content_type="application/json",
            headers=_attachment(f"{request.user.username}-data.json"),
        )

    def _body(self, head: bytes, readings, username: str):
        """``head`` reopened for ``"readings":[…]}``. A failure part-way is logged and ends the
        body where it is: the document is never closed, so it does not parse. (The 200 went out
        with the first piece; raising instead left the server's client waiting on an open
        connection until it gave up.)"""
        render = JSONRenderer().render
        try:
            yield head[:-1] + b',"readings":['
            piece, size, comma = [], 0, b""
            for reading in readings:
                out = render(reading)
                piece += (comma, out)
                comma, size = b",", size + len(out)
                if size >= self.piece_bytes:
                    yield b"".join(piece)
                    piece, size = [], 0
            piece.append(b"]}")
            yield b"".join(piece)
        except Exception:
            logging.getLogger(__name__).exception(
                "The data export for %s failed part-way: the download was cut short", username
            )
        finally:
            readings.close()


class MeDataApi(APIView):
    @extend_schema(
        request=None,
        responses=inline_serializer(
            "Erased",
            {
                "readings": serializers.IntegerField(),
                "sessions": serializers.IntegerField(),
                "consents_revoked": serializers.IntegerField(),
            },
        ),
    )
    def delete(self, request):
        return Response(services.learner_data_erase(learner=request.user))
