"""Reads for the tutoring domain: visibility rules.

Visibility is the one place object-level permissions live: admins see everything,
instructors their own courses (and those courses' sessions), learners the courses they are
enrolled in and only their own sessions. Views turn "not visible" into 404. Timelines, reports
and the learner's export, which read readings, are in ``records.selectors``.
"""

from __future__ import annotations

from django.db.models import Count, Exists, OuterRef, Prefetch, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import Http404

from tutoring.models import Consent, Course, Enrollment, LearnerSession, User


def course_list(*, user: User) -> QuerySet[Course]:
    qs = Course.objects.all()
    if user.is_platform_admin:
        return qs
    if user.is_instructor:
        return qs.filter(instructors=user).distinct()
    return qs.filter(enrollments__learner=user).distinct()


def course_list_for_output(*, user: User) -> QuerySet[Course]:
    """``course_list`` with what the course API shows per course, fetched for the whole list.

    Each course carries ``viewer_manages`` (the caller may manage it), ``enrolled_count`` (its
    enrolments) and, for learners, ``viewer_consents`` (the caller's active consent, at most
    one) — a fixed number of queries however many courses a page holds.
    """
    if user.is_platform_admin:
        manages = Value(True)
    else:
        manages = Exists(
            Course.instructors.through.objects.filter(course_id=OuterRef("pk"), user_id=user.pk)
        )
    enrolled = (
        Enrollment.objects.filter(course=OuterRef("pk"))
        .order_by()
        .values("course")
        .annotate(n=Count("pk"))
        .values("n")
    )
    qs = course_list(user=user).annotate(
        viewer_manages=manages, enrolled_count=Coalesce(Subquery(enrolled), 0)
    )
    qs = qs.prefetch_related("instructors")
    if user.is_learner:
        mine = Consent.objects.filter(learner=user, revoked_at__isnull=True)
        qs = qs.prefetch_related(Prefetch("consents", queryset=mine, to_attr="viewer_consents"))
    return qs


def course_get(*, user: User, course_id: int) -> Course:
    course = course_list(user=user).filter(pk=course_id).first()
    if course is None:
        raise Http404("no such course")
    return course


def course_is_managed_by(*, course: Course, user: User) -> bool:
    return user.is_platform_admin or course.instructors.filter(pk=user.pk).exists()


def consent_active(*, learner: User, course: Course) -> Consent | None:
    return Consent.objects.filter(learner=learner, course=course, revoked_at__isnull=True).first()


def session_list(*, user: User, course: Course | None = None) -> QuerySet[LearnerSession]:
    qs = LearnerSession.objects.select_related("learner", "course")
    if course is not None:
        qs = qs.filter(course=course)
    if user.is_platform_admin:
        return qs
    if user.is_instructor:
        return qs.filter(course__instructors=user).distinct()
    return qs.filter(learner=user)


def session_get(*, user: User, session_id: int) -> LearnerSession:
    session = session_list(user=user).filter(pk=session_id).first()
    if session is None:
        raise Http404("no such session")
    return session


def session_emotion_visible(session: LearnerSession) -> bool:
    """Emotion data is shown only if the session recorded it and the course still allows it."""
    return session.emotion_enabled and session.course.emotion_inference_enabled
