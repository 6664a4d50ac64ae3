"""The label review page: one reading at a time, its face crop beside the model's estimate,
one key or click per label (the admin's changelist is no place to judge faces)."""

from __future__ import annotations

import base64
from collections import Counter
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from emotion import selectors, services
from ml.classes import EMOTIONS

SKIP_KEY = "0"
#: what the page calls a reading by the reviews it already has
STAGES = ("first review", "second review", "tie-break review")


def shortcuts() -> list[tuple[str, list[str]]]:
    """Each expression's keys: its number (1–7), and its first letter where no other
    expression shares it (not s: sad, surprise)."""
    firsts = Counter(e[0] for e in EMOTIONS)
    return [
        (e, [str(i), *([e[0]] if firsts[e[0]] == 1 else [])]) for i, e in enumerate(EMOTIONS, 1)
    ]


def reviewer_required(view):
    @wraps(view)
    @login_required
    def wrapped(request, *args, **kwargs):
        if not selectors.reviewer_allowed(user=request.user):
            raise PermissionDenied("label review is for reviewers")
        return view(request, *args, **kwargs)

    return wrapped


def _reading_id(request, name: str) -> int | None:
    value = request.GET.get(name, "")
    return int(value) if value.isdigit() and len(value) <= 18 else None  # within a bigint


@reviewer_required
def review(request):
    reading = selectors.review_next(
        reviewer=request.user, after=_reading_id(request, "after"), at=_reading_id(request, "at")
    )
    crop = base64.b64encode(bytes(reading.face_crop)).decode() if reading else ""
    return render(
        request,
        "emotion/review.html",
        {
            "reading": reading,
            "crop": crop,
            "stage": STAGES[reading.n_reviews] if reading else "",
            "show_model": reading is not None and selectors.review_shows_model(reading=reading),
            "choices": [(e, keys, " ".join(keys)) for e, keys in shortcuts()],
            "skip_key": SKIP_KEY,
            "progress": selectors.review_progress(reviewer=request.user),
            "agreement": selectors.review_agreement(),
        },
    )


@require_POST
@reviewer_required
def review_label(request, reading_id: int):
    reading = get_object_or_404(selectors.review_readings(), pk=reading_id)
    try:
        services.reading_review(
            reading=reading, label=request.POST.get("label", ""), reviewer=request.user
        )
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
        return redirect(f"{reverse('review')}?at={reading.pk}")  # the same reading again
    return redirect(f"{reverse('review')}?after={reading.pk}")
