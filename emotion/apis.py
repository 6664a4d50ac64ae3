"""REST: frame upload and the readings of a session."""

from __future__ import annotations

import base64
import binascii

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import bounded, error_body, too_many_files
from config.params import paginated, parse_range, parse_when
from emotion.models import Reading
from emotion.services import IncomingFrame, SessionBacklogged, SessionClosed, frames_accept
from emotion.stream_protocol import BAD_TIME, parse_time
from emotion.validation import FrameRejection
from ml.engagement import UNCERTAIN
from tutoring import selectors


class FrameUploadApi(APIView):
    """Upload webcam frames (multipart, field ``frames``, one or many JPEG/PNG files).

    Optional ``sequence`` and ``captured_at`` fields, repeated in the same order as the files.
    All frames accepted → 202. If any file is rejected the status is 4xx (413 when all
    rejections are size, 415 when all are type, else 400) with a reason per file — and the
    frames listed under ``accepted`` are still processed.
    """

    parser_classes = [MultiPartParser]

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "FrameUpload",
                {
                    "frames": serializers.ListField(child=serializers.FileField()),
                    "sequence": serializers.ListField(
                        child=serializers.IntegerField(), required=False
                    ),
                    "captured_at": serializers.ListField(
                        child=serializers.DateTimeField(), required=False
                    ),
                },
            )
        },
        responses={
            202: OpenApiTypes.OBJECT,
            400: OpenApiTypes.OBJECT,
            409: OpenApiTypes.OBJECT,
            413: OpenApiTypes.OBJECT,
            415: OpenApiTypes.OBJECT,
            429: OpenApiTypes.OBJECT,
        },
    )
    def post(self, request, session_id: int):
        limits = settings.EMOTION_LIMITS
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        session = selectors.session_get(user=request.user, session_id=session_id)
        if session.learner_id != request.user.pk:
            raise PermissionDenied("only the session's learner uploads frames")
        if length > limits["max_request_bytes"]:
            return _error(
                413,
                "request_too_large",
                f"request of {length} bytes exceeds {limits['max_request_bytes']}",
            )
        files = request.FILES.getlist("frames")
        seqs = request.data.getlist("sequence")
        times = request.data.getlist("captured_at")
        if not files:
            raise ValidationError({"frames": "no files in the multipart field 'frames'"})
        if len(files) > limits["max_frames_per_request"]:
            raise too_many_files()  # as past Django's own cap (DATA_UPLOAD_MAX_NUMBER_FILES)
        for name, values in (("sequence", seqs), ("captured_at", times)):
            if values and len(values) != len(files):
                raise ValidationError(
                    {
                        name: f"give one {name} per file or none ({len(values)} for {len(files)} files)"
                    }
                )
        frames = []
        for i, f in enumerate(files):
            seq = _int_or_error(seqs[i], "sequence") if seqs else None
            when = parse_when(times[i], "captured_at") if times else None
            data = b"" if f.size > limits["max_frame_bytes"] else f.read()  # never read a huge file
            frames.append(
                IncomingFrame(data=data, sequence=seq, captured_at=when, name=f.name, size=f.size)
            )
        return _accept(session, frames)


def _accept(session, frames: list[IncomingFrame], name: str = "file") -> Response:
    """Accept ``frames`` and answer as the upload endpoints do: 202 when all were accepted,
    else 4xx with a reason per rejected frame, which ``name`` (its file name, or its index in
    the request) identifies; the accepted ones are kept."""
    limits = settings.EMOTION_LIMITS
    try:
        result = frames_accept(
            session=session, frames=frames, max_pending=limits["max_pending_per_session"]
        )
    except SessionClosed as e:
        return _error(409, "session_ended", str(e))
    except SessionBacklogged as e:
        response = _error(429, "too_many_pending", str(e))
        response["Retry-After"] = "2"
        return response
    rejected = [
        {name: r["file"], **{k: v for k, v in r.items() if k != "file"}} for r in result.rejected
    ]
    body = {
        "accepted": [a["sequence"] for a in result.accepted],
        "duplicates": result.duplicates,
        "rejected": rejected,
    }
    if not rejected:
        return Response(body, status=status.HTTP_202_ACCEPTED)
    codes = {r["code"] for r in rejected}
    http = 413 if codes == {"too_large"} else 415 if codes == {"unsupported_type"} else 400
    msg = f"{len(rejected)} of {len(frames)} frame(s) rejected; {len(result.accepted)} accepted"
    error = error_body(http, "frames_rejected", msg, rejected)
    return Response({**error, **bounded(body)}, status=http)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "format": "date-time"},
            {"type": "number", "description": "epoch milliseconds"},
        ]
    }
)
class _ClientTimeField(serializers.JSONField):
    """``captured_at`` as the stream takes it: ISO 8601 with an offset, or epoch ms. Checked
    per frame (a bad one rejects that frame, not the request)."""


@extend_schema_field(
    {
        "type": "object",
        "description": "the device's cues (docs/protocol.md, Device frames)",
        "additionalProperties": True,
    }
)
class _CuesField(serializers.JSONField):
    """Any JSON here: the cues are validated per frame (``bad_cues`` with the key and range)."""


class ObservationUploadApi(APIView):
    """Device frames as JSON: what the learner's browser found in each picture (``cues``),
    with the 48×48 grayscale face crop (base64 of 2304 raw bytes) when the session estimates
    emotion. Answered as the frame upload is: 202, or 4xx with a reason per rejected frame
    (``index``, ``sequence``, ``code``, ``reason``), the accepted ones kept."""

    class InputSerializer(serializers.Serializer):
        class FrameInput(serializers.Serializer):
            sequence = serializers.IntegerField(required=False, allow_null=True)
            captured_at = _ClientTimeField(required=False, allow_null=True)
            cues = _CuesField(required=False, allow_null=True)
            crop = serializers.CharField(
                required=False, allow_null=True, trim_whitespace=False, allow_blank=True
            )

        frames = FrameInput(many=True, allow_empty=False)

    @extend_schema(
        request=InputSerializer,
        responses={
            202: OpenApiTypes.OBJECT,
            400: OpenApiTypes.OBJECT,
            403: OpenApiTypes.OBJECT,
            409: OpenApiTypes.OBJECT,
            413: OpenApiTypes.OBJECT,
            429: OpenApiTypes.OBJECT,
        },
    )
    def post(self, request, session_id: int):
        session = selectors.session_get(user=request.user, session_id=session_id)
        if session.learner_id != request.user.pk:
            raise PermissionDenied("only the session's learner uploads frames")
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        items = serializer.validated_data["frames"]
        if len(items) > settings.EMOTION_LIMITS["max_frames_per_request"]:
            raise too_many_files()
        frames = [_observation(i, item) for i, item in enumerate(items)]
        return _accept(session, frames, name="index")


def _observation(index: int, item: dict) -> IncomingFrame:
    """One JSON frame as the service takes it; a time or crop the transport cannot read is
    this frame's rejection."""
    seq, crop = item.get("sequence"), item.get("crop")
    frame = IncomingFrame(
        data=b"", sequence=seq, name=index, kind="cues" if crop is None else "crop"
    )
    frame.cues = item.get("cues")
    raw_time = item.get("captured_at")
    frame.captured_at = parse_time(raw_time)
    if raw_time is not None and frame.captured_at is None:
        frame.rejection = FrameRejection("bad_timestamp", BAD_TIME)
    if crop is not None:
        try:
            frame.data = base64.b64decode(crop, validate=True)
        except (binascii.Error, ValueError):
            frame.rejection = FrameRejection("bad_crop", "crop must be base64 of 2304 bytes")
    return frame


def _int_or_error(value, name):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValidationError({name: f"not an integer: {value!r}"}) from None


def _error(http: int, code: str, message: str) -> Response:
    return Response(error_body(http, code, message), status=http)


class ReadingOutput(serializers.ModelSerializer):
    shown_label = serializers.SerializerMethodField()
    model_version = serializers.SerializerMethodField()
    model_precision = serializers.SerializerMethodField()

    class Meta:
        model = Reading
        fields = [
            "sequence",
            "captured_at",
            "received_at",
            "analysed_at",
            "error",
            "face_found",
            "face_source",
            "box",
            "attentive",
            "cues",
            "label",
            "confidence",
            "probs",
            "uncertain",
            "shown_label",
            "model_version",
            "model_precision",
        ]

    def get_shown_label(self, r) -> str | None:
        """What the pages show: ``label`` (the model's top class), or "uncertain" where the
        model abstained."""
        return UNCERTAIN if r.uncertain and r.label else r.label

    def get_model_version(self, r) -> str | None:
        return r.model_version.checkpoint_sha256[:12] if r.model_version_id else None

    def get_model_precision(self, r) -> str | None:
        return r.model_version.precision if r.model_version_id else None

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if not self.context.get("emotion"):
            for k in ("label", "confidence", "probs", "uncertain", "shown_label"):
                data.pop(k, None)
        return data


class SessionReadingsApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATETIME),
            OpenApiParameter("to", OpenApiTypes.DATETIME),
        ],
        responses=ReadingOutput(many=True),
    )
    def get(self, request, session_id: int):
        session = selectors.session_get(user=request.user, session_id=session_id)
        qs = session.readings.select_related("model_version").order_by("sequence")
        since, until = parse_range(request.query_params)  # a reversed range is a 400
        if since:
            qs = qs.filter(captured_at__gte=since)
        if until:
            qs = qs.filter(captured_at__lt=until)
        ctx = {"request": request, "emotion": selectors.session_emotion_visible(session)}
        return paginated(request, self, qs, ReadingOutput, context=ctx)
