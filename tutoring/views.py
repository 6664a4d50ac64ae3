"""Server-rendered pages for learners and instructors (the API does the data work)."""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.http import require_POST

from tutoring import selectors, services
from tutoring.models import Course


def role_required(*, learner: bool = False, teacher: bool = False):
    def deco(view):
        @wraps(view)
        @login_required
        def wrapped(request, *args, **kwargs):
            u = request.user
            ok = (learner and u.is_learner) or (
                teacher and (u.is_instructor or u.is_platform_admin)
            )
            if not ok:
                raise PermissionDenied("this page is not for your role")
            return view(request, *args, **kwargs)

        return wrapped

    return deco


@login_required
def home(request):
    if request.user.is_learner:
        return redirect("learn-home")
    return redirect("teach-home")


# --- learners -------------------------------------------------------------------------------------


@role_required(learner=True)
def learn_home(request):
    courses = selectors.course_list(user=request.user).order_by("title")
    rows = []
    for c in courses:
        consent = selectors.consent_active(learner=request.user, course=c)
        current = services.consent_current(consent=consent, course=c)
        rows.append({"course": c, "consent": consent, "current": current})
    return render(request, "tutoring/learn_home.html", {"rows": rows})


def _learner_course(request, course_id) -> Course:
    return selectors.course_get(user=request.user, course_id=course_id)


@role_required(learner=True)
def learn_course(request, course_id: int):
    course = _learner_course(request, course_id)
    consent = selectors.consent_active(learner=request.user, course=course)
    outdated = (
        consent
        if consent and not services.consent_current(consent=consent, course=course)
        else None
    )
    if outdated:  # given under an older data policy: ask again, showing the current terms
        consent = None
    open_session = (
        selectors.session_list(user=request.user, course=course)
        .filter(status="active", consent=consent)  # one under a superseded consent takes no frames
        .first()
        if consent
        else None
    )
    return render(
        request,
        "tutoring/learn_course.html",
        {
            "course": course,
            "consent": consent,
            "outdated_consent": outdated,
            "open_session": open_session,
        },
    )


@require_POST
@role_required(learner=True)
def learn_consent(request, course_id: int):
    course = _learner_course(request, course_id)
    if request.POST.get("engagement") != "on":
        messages.error(
            request, "Tick the engagement box to take part; nothing is recorded otherwise."
        )
        return redirect("learn-course", course_id=course.pk)
    try:
        services.consent_grant(
            learner=request.user,
            course=course,
            engagement=True,
            emotion=request.POST.get("emotion") == "on",
        )
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
    else:
        messages.success(
            request, "Thank you — your consent is recorded. You can revoke it at any time."
        )
    return redirect("learn-course", course_id=course.pk)


@require_POST
@role_required(learner=True)
def learn_revoke(request, course_id: int):
    course = _learner_course(request, course_id)
    try:
        services.consent_revoke(learner=request.user, course=course)
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
    else:
        messages.success(request, "Consent revoked. Nothing more will be recorded in this course.")
    return redirect("learn-course", course_id=course.pk)


@require_POST
@role_required(learner=True)
def learn_start(request, course_id: int):
    course = _learner_course(request, course_id)
    try:
        session = services.session_start(
            learner=request.user,
            course=course,
            client_info={"user_agent": request.headers.get("User-Agent", "")},
        )
    except PermissionDenied as e:
        # consent revoked, or the policy changed since the course page was loaded: say why
        # there, where consent can be given again, rather than on a bare 403 page
        messages.error(request, str(e) or "a session cannot be started now")
        return redirect("learn-course", course_id=course.pk)
    return redirect("learn-session", session_id=session.pk)


@role_required(learner=True)
def learn_session(request, session_id: int):
    session = selectors.session_get(user=request.user, session_id=session_id)
    config = {
        "sessionId": session.pk,
        "wsPath": f"/ws/sessions/{session.pk}/stream/",
        "endUrl": f"/api/sessions/{session.pk}/end/",
        "reportUrl": f"/api/sessions/{session.pk}/report/",
        "fps": session.course.capture_fps,
        "width": 480,
        "open": session.is_open,
        "courseUrl": reverse("learn-course", args=[session.course_id]),
        "device": device_config(request, session),
    }
    return render(request, "tutoring/learn_session.html", {"session": session, "config": config})


def device_config(request, session) -> dict:
    """What the recorder needs for the on-device face path (the socket's "ready" repeats the
    policy, and wins). ``?device_models=`` points the model elsewhere: a test hook for the
    fallback path (a missing folder = a model that cannot load); only same-site paths."""
    course = session.course
    models = request.GET.get("device_models", "")
    if not models.startswith("/") or models.startswith("//"):
        models = static("vendor/human/models/")
    return {
        "modelBase": models,
        "backend": "webgl",
        "allow_full_pictures": course.allow_full_pictures,
        "min_capture_fps": course.min_capture_fps,
        "capture_fps": course.capture_fps,
        "attention_cone_degrees": course.attention_cone_degrees,
        "send_crop": session.emotion_enabled,
    }


# --- instructors ----------------------------------------------------------------------------------


def managed_course(request, course_id) -> Course:
    course = selectors.course_get(user=request.user, course_id=course_id)
    if not selectors.course_is_managed_by(course=course, user=request.user):
        raise Http404("no such course")
    return course


@role_required(teacher=True)
def teach_home(request):
    courses = (
        selectors.course_list(user=request.user).order_by("title").prefetch_related("enrollments")
    )
    return render(request, "tutoring/teach_home.html", {"courses": courses})


@role_required(teacher=True)
def teach_live(request, course_id: int):
    course = managed_course(request, course_id)
    config = {
        "courseId": course.pk,
        "wsPath": f"/ws/courses/{course.pk}/live/",
        "emotionEnabled": course.emotion_inference_enabled,
        "absentSeconds": course.alert_absent_seconds,
        "sessionUrl": "/teach/sessions/",
    }
    return render(request, "tutoring/teach_live.html", {"course": course, "config": config})
