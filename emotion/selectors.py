"""Reads for the label review page."""

from __future__ import annotations

from emotion.models import Reading


def reviewer_allowed(*, user) -> bool:
    """Who reviews labels: the platform's admins ("Admin / reviewer" role, superusers) and
    staff the admin lets change readings (the changelist's own permission)."""
    return user.is_authenticated and (
        user.is_platform_admin or user.has_perm("emotion.change_reading")
    )


def review_readings():
    """The readings a person can judge: an expression the model estimated (the learner agreed
    to it) and the face crop it was estimated from (kept only where the course opts in)."""
    return (
        Reading.objects.filter(label__isnull=False, face_crop__isnull=False)
        .exclude(face_crop=b"")
        .order_by("pk")
    )


def review_next(*, after: int | None = None) -> Reading | None:
    """The next reading not reviewed yet after ``after`` (a skipped or just labelled one),
    starting over from the first when none is left after it."""
    todo = review_readings().filter(reviewed_label__isnull=True)
    if after is not None:
        reading = todo.filter(pk__gt=after).first()
        if reading is not None:
            return reading
    return todo.first()


def review_progress() -> dict:
    readings = review_readings()
    return {
        "reviewed": readings.filter(reviewed_label__isnull=False).count(),
        "total": readings.count(),
    }
