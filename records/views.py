"""Server-rendered pages of what is kept about learners: the instructors' session and course
reports, and the learner's erasure of their own data."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods
from rest_framework.exceptions import ValidationError as DRFValidationError

from config.params import parse_range, parse_when
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


#: why a session ended, as an instructor reads it (``LearnerSession.end_reason``)
END_REASONS = {
    "ended": "stopped by the learner",
    "consent_revoked": "consent revoked",
    "consent_superseded": "consent given again",
    "superseded": "a newer session replaced it",
    "data_erased": "the learner erased their data",
    "policy_changed": "the course's data policy changed",
    "deleted": "deleted by an administrator",
    "course_deleted": "the course was deleted",
    "idle": "no pictures for a long while (idle)",
}


def end_reason_text(session) -> str:
    if session.is_open:
        return "in progress"
    return END_REASONS.get(session.end_reason, "ended")


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
        {
            "session": session,
            "report": report,
            "config": config,
            "end_reason": end_reason_text(session),
        },
    )


@role_required(teacher=True)
def teach_sessions(request, course_id: int):
    """The course's past and open sessions, newest first, a page at a time; ``?learner=<id>``
    keeps one learner's."""
    course = managed_course(request, course_id)
    learners = list(selectors.course_session_learners(course=course))
    learner = next((u for u in learners if str(u.pk) == request.GET.get("learner")), None)
    sessions = selectors.course_sessions(course=course, learner_id=learner.pk if learner else None)
    page = Paginator(sessions, selectors.HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = selectors.session_rows(sessions=list(page.object_list))
    for row in rows:
        row["end_reason"] = end_reason_text(row["session"])
    query = urlencode({"learner": learner.pk}) + "&" if learner else ""
    return render(
        request,
        "tutoring/teach_sessions.html",
        {
            "course": course,
            "learners": learners,
            "learner": learner,
            "page": page,
            "rows": rows,
            "page_query": query,
        },
    )


@role_required(teacher=True)
def teach_reports(request, course_id: int):
    course = managed_course(request, course_id)
    raw_from, raw_to = request.GET.get("from", ""), request.GET.get("to", "")
    try:
        date_from, date_to = parse_range(request.GET)
    except DRFValidationError as e:  # a bad or reversed range: say why (400), and only that
        error = range_error_text(e, raw_from, raw_to)
        context = {"course": course, "from": raw_from, "to": raw_to, "error": error}
        context["csv_url"] = f"/api/courses/{course.pk}/report/?format=csv"
        return render(request, "tutoring/teach_reports.html", context, status=400)
    report = selectors.course_report(course=course, date_from=date_from, date_to=date_to)
    params = [("format", "csv")]
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
            "error": None,
            "csv_url": csv_url,
        },
    )


def range_error_text(error: DRFValidationError, raw_from: str, raw_to: str) -> str:
    """What is wrong with the range the form sent, in words for the instructor (the API's
    400 keeps the field-by-field message)."""
    detail = error.detail if isinstance(error.detail, dict) else {}
    if "from" in detail:
        return f"The start date “{raw_from}” is not a valid date: pick one in the calendar."
    try:
        parse_when(raw_to, "to")
    except DRFValidationError:
        return f"The end date “{raw_to}” is not a valid date: pick one in the calendar."
    return (
        "The end date must be after the start date. The report includes the start date and "
        "stops before the end date."
    )
