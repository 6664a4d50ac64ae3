"""Server-rendered pages of what is kept about learners: the instructors' session and course
reports, and the learner's erasure of their own data."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods
from rest_framework.exceptions import ValidationError as DRFValidationError

from config.params import error_text, parse_range
from records import selectors, services
from tutoring.selectors import session_get
from tutoring.views import managed_course, role_required

# --- learners -------------------------------------------------------------------------------------


ERASE_WORD = "ERASE"


@require_http_methods(["GET", "POST"])
@role_required(learner=True)
def learn_erase(request):
    """The learner's own erasure request: GET shows what would be erased (counts), POST with
    the typed confirmation erases it, through the same service as ``DELETE /api/me/data/``."""
    error, status = None, 200
    if request.method == "POST":
        if request.POST.get("confirm", "").strip().upper() == ERASE_WORD:
            erased = services.learner_data_erase(learner=request.user)
            messages.success(
                request,
                f"Your data is erased: {erased['sessions']} session(s) and "
                f"{erased['readings']} reading(s) deleted, consent revoked in "
                f"{erased['consents_revoked']} course(s). Your consent records are kept as the "
                "record of what you agreed to.",
            )
            return redirect("learn-home")
        error, status = f"Type {ERASE_WORD} in the box to confirm. Nothing was erased.", 400
    counts = selectors.learner_data_counts(learner=request.user)
    return render(
        request,
        "tutoring/learn_erase.html",
        {"counts": counts, "word": ERASE_WORD, "error": error},
        status=status,
    )


# --- instructors ----------------------------------------------------------------------------------


@role_required(teacher=True)
def teach_session(request, session_id: int):
    session = session_get(user=request.user, session_id=session_id)
    report = selectors.session_report(session=session)
    config = {
        "timelineUrl": f"/api/sessions/{session.pk}/timeline/?window=10",
        "emotionEnabled": report["emotion_enabled"],
    }
    return render(
        request,
        "tutoring/teach_session.html",
        {"session": session, "report": report, "config": config},
    )


@role_required(teacher=True)
def teach_reports(request, course_id: int):
    course = managed_course(request, course_id)
    raw_from, raw_to = request.GET.get("from", ""), request.GET.get("to", "")
    error = None
    try:
        date_from, date_to = parse_range(request.GET)
    except DRFValidationError as e:  # a bad or reversed range: say why (400), report on all
        error, date_from, date_to = error_text(e), None, None
    report = selectors.course_report(course=course, date_from=date_from, date_to=date_to)
    params = [("format", "csv")]
    if not error:
        params += [(k, v) for k, v in (("from", raw_from), ("to", raw_to)) if v]
    csv_url = f"/api/courses/{course.pk}/report/?{urlencode(params)}"
    return render(
        request,
        "tutoring/teach_reports.html",
        {
            "course": course,
            "report": report,
            "from": raw_from,
            "to": raw_to,
            "error": error,
            "csv_url": csv_url,
        },
        status=400 if error else 200,
    )
