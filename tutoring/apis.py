"""Thin REST views: parse input, call a selector or service, serialise output."""

from __future__ import annotations

from django import forms
from django.contrib.auth import authenticate
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from config.auth import TokenAuthentication
from config.params import paginated, parse_range, when_from_text
from tutoring import selectors, services
from tutoring.models import Consent, Course, LearnerSession

# --- shared output serializers -----------------------------------------------------------------


class ConsentOutput(serializers.ModelSerializer):
    scopes = serializers.ListField(child=serializers.CharField(), read_only=True)
    active = serializers.BooleanField(read_only=True)
    # active AND given under the course's policy version: only then can sessions start
    current = serializers.SerializerMethodField()

    class Meta:
        model = Consent
        fields = [
            "id",
            "course",
            "scopes",
            "policy_version",
            "granted_at",
            "revoked_at",
            "active",
            "current",
        ]

    def get_current(self, consent) -> bool:
        return services.consent_current(consent=consent, course=consent.course)


class SessionOutput(serializers.ModelSerializer):
    learner = serializers.CharField(source="learner.username")
    learner_name = serializers.CharField(source="learner.display_name")

    class Meta:
        model = LearnerSession
        fields = [
            "id",
            "course",
            "learner",
            "learner_name",
            "learner_id",
            "status",
            "started_at",
            "ended_at",
            "end_reason",
            "emotion_enabled",
            "last_frame_at",
            "client_info",
        ]


# --- auth ----------------------------------------------------------------------------------------


class TokenApi(APIView):
    """Exchange username + password for an API token (scripts; browsers use the session).

    The key is in this answer only (the database keeps its digest), with its expiry
    (``API_TOKEN_TTL_HOURS``); send it as ``Authorization: Token <key>``.
    """

    # the credentials are in the body: a stale token in the header must not make this a 401
    authentication_classes = []
    permission_classes = []
    throttle_scope = "auth"
    renderer_classes = [JSONRenderer]

    @extend_schema_serializer(component_name="TokenInput")
    class InputSerializer(serializers.Serializer):
        username = serializers.CharField()
        password = serializers.CharField(trim_whitespace=False, style={"input_type": "password"})

    @extend_schema_serializer(component_name="TokenOutput")
    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()
        expiry = serializers.DateTimeField()

    @extend_schema(request=InputSerializer, responses=OutputSerializer, auth=[])
    def post(self, request):
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        user = authenticate(request=request._request, **s.validated_data)
        if user is None:  # wrong password, unknown or inactive account: one answer for all
            msg = "Unable to log in with provided credentials."
            raise ValidationError({"non_field_errors": [msg]}, "authorization")
        token, key = services.api_token_create(user=user)
        return Response(self.OutputSerializer({"token": key, "expiry": token.expiry}).data)


class TokenLogoutApi(APIView):
    """Revoke the token this request is made with (a script signing out)."""

    authentication_classes = [TokenAuthentication]

    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        services.api_token_revoke(token=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenLogoutAllApi(APIView):
    """Revoke every API token of the caller (by a token, or signed in on the web)."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        services.api_token_revoke_all(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- courses -----------------------------------------------------------------------------------


class CourseOutput(serializers.ModelSerializer):
    instructors = serializers.SlugRelatedField(slug_field="username", many=True, read_only=True)
    learner_count = serializers.SerializerMethodField()
    my_consent = serializers.SerializerMethodField()

    class Meta:
        model = Course
        fields = [
            "id",
            "title",
            "description",
            "instructors",
            "learner_count",
            "emotion_inference_enabled",
            "keep_face_crops",
            "retention_days",
            "consent_policy_version",
            "capture_fps",
            "allow_full_pictures",
            "min_capture_fps",
            "attention_cone_degrees",
            "uncertainty_threshold",
            "alert_absent_seconds",
            "alert_disengaged_seconds",
            "my_consent",
        ]

    # The annotations of selectors.course_list_for_output when present (no query per course);
    # otherwise one query each.
    def get_learner_count(self, course) -> int | None:
        user = self.context["request"].user
        manages = getattr(course, "viewer_manages", None)
        if manages is None:
            manages = selectors.course_is_managed_by(course=course, user=user)
        if not manages:
            return None
        count = getattr(course, "enrolled_count", None)
        return course.enrollments.count() if count is None else count

    def get_my_consent(self, course) -> dict | None:
        user = self.context["request"].user
        if not user.is_learner:
            return None
        if hasattr(course, "viewer_consents"):
            c = course.viewer_consents[0] if course.viewer_consents else None
        else:
            c = selectors.consent_active(learner=user, course=course)
        if c is None:
            return None
        c.course = course  # no query per course for ConsentOutput.current
        return ConsentOutput(c).data


class CourseListApi(APIView):
    @extend_schema(responses=CourseOutput(many=True))
    def get(self, request):
        qs = selectors.course_list_for_output(user=request.user)
        return paginated(request, self, qs, CourseOutput)


class CourseDetailApi(APIView):
    @extend_schema(responses=CourseOutput)
    def get(self, request, course_id: int):
        course = selectors.course_list_for_output(user=request.user).filter(pk=course_id).first()
        if course is None:
            raise NotFound("no such course")
        return Response(CourseOutput(course, context={"request": request}).data)


class CourseConsentApi(APIView):
    @extend_schema_serializer(component_name="ConsentInput")
    class InputSerializer(serializers.Serializer):
        scope = serializers.ListField(
            child=serializers.ChoiceField(choices=["engagement", "emotion"]),
            allow_empty=False,
            default=["engagement"],
        )

    def _course(self, request, course_id):
        course = selectors.course_get(user=request.user, course_id=course_id)
        if not request.user.is_learner:
            raise PermissionDenied("only learners give or revoke consent")
        return course

    @extend_schema(responses=ConsentOutput)
    def get(self, request, course_id: int):
        course = self._course(request, course_id)
        c = selectors.consent_active(learner=request.user, course=course)
        if c is None:
            from django.http import Http404

            raise Http404("no active consent")
        c.course = course
        return Response(ConsentOutput(c).data)

    @extend_schema(request=InputSerializer, responses={201: ConsentOutput, 200: ConsentOutput})
    def post(self, request, course_id: int):
        """201 with a new consent; 200 when the same scopes under the same policy version
        were already granted (nothing changed: a retried or double-submitted request)."""
        course = self._course(request, course_id)
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        scopes = set(s.validated_data["scope"])
        before = selectors.consent_active(learner=request.user, course=course)
        consent = services.consent_grant(
            learner=request.user,
            course=course,
            engagement="engagement" in scopes,
            emotion="emotion" in scopes,
        )
        unchanged = before is not None and before.pk == consent.pk
        return Response(
            ConsentOutput(consent).data,
            status=status.HTTP_200_OK if unchanged else status.HTTP_201_CREATED,
        )

    @extend_schema(responses=ConsentOutput)
    def delete(self, request, course_id: int):
        course = self._course(request, course_id)
        consent = services.consent_revoke(learner=request.user, course=course)
        return Response(ConsentOutput(consent).data)


# --- sessions ------------------------------------------------------------------------------------


class SessionCreateApi(APIView):
    @extend_schema_serializer(component_name="SessionStartInput")
    class InputSerializer(serializers.Serializer):
        course = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
        client_info = serializers.DictField(required=False, default=dict)

    @extend_schema(request=InputSerializer, responses={201: SessionOutput})
    def post(self, request):
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        course = selectors.course_get(user=request.user, course_id=s.validated_data["course"])
        if not request.user.is_learner:
            raise PermissionDenied("only learners start sessions")
        session = services.session_start(
            learner=request.user, course=course, client_info=s.validated_data["client_info"]
        )
        return Response(SessionOutput(session).data, status=status.HTTP_201_CREATED)


class SessionDetailApi(APIView):
    @extend_schema(responses=SessionOutput)
    def get(self, request, session_id: int):
        session = selectors.session_get(user=request.user, session_id=session_id)
        return Response(SessionOutput(session).data)


class SessionEndApi(APIView):
    @extend_schema(request=None, responses=SessionOutput)
    def post(self, request, session_id: int):
        session = selectors.session_get(user=request.user, session_id=session_id)
        if session.learner_id != request.user.pk and not selectors.course_is_managed_by(
            course=session.course, user=request.user
        ):
            raise PermissionDenied("only the learner or the course's instructors end a session")
        session = services.session_end(session=session, reason="ended")
        return Response(SessionOutput(session).data)


class SessionFilter(filters.FilterSet):
    learner = filters.NumberFilter(field_name="learner_id", min_value=0, max_value=2**63 - 1)
    status = filters.ChoiceFilter(choices=LearnerSession.Status.choices)

    class Meta:
        model = LearnerSession
        fields = ["learner", "status"]


class WhenField(forms.Field):
    """A date or ISO datetime read as :func:`parse_when` reads it (the reports' ``from``/``to``)."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return when_from_text(value)
        except ValueError as e:
            raise forms.ValidationError(str(e), code="invalid") from None


class WhenFilter(filters.Filter):
    field_class = WhenField


SessionFilter.base_filters["from"] = WhenFilter(field_name="started_at", lookup_expr="gte")
SessionFilter.base_filters["to"] = WhenFilter(field_name="started_at", lookup_expr="lt")


class CourseSessionListApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("learner", int),
            OpenApiParameter("status", str, enum=["active", "ended"]),
            OpenApiParameter("from", OpenApiTypes.DATETIME),
            OpenApiParameter("to", OpenApiTypes.DATETIME),
        ],
        responses=SessionOutput(many=True),
    )
    def get(self, request, course_id: int):
        course = selectors.course_get(user=request.user, course_id=course_id)
        qs = selectors.session_list(user=request.user, course=course)
        parse_range(request.query_params)  # a reversed range is a 400, as for the reports
        f = SessionFilter(request.query_params, queryset=qs)
        if not f.is_valid():
            raise ValidationError(f.errors)
        return paginated(request, self, f.qs, SessionOutput)
