"""Writes of what is kept about learners: erasure, deletes and retention.

Each removes a learner's, session's or course's readings (``emotion``) together with the
tutoring rows they belong to; open sessions are first ended through
``tutoring.services.session_end``, so the live dashboard and the session's stream are told.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from emotion.live import session_summaries_forget
from emotion.models import Reading
from emotion.services import frames_discard_pending, label_reviews_withdraw
from tutoring.models import Consent, Course, Enrollment, LearnerSession, User
from tutoring.services import session_end, sessions_end_open


def _live_summaries_forget(*, session_ids) -> None:
    """Once the deletion commits, drop the deleted sessions' cached live summaries (the
    learner's name, engagement and emotion mix, otherwise kept an hour). On commit, so a batch
    that finishes meanwhile cannot cache one again before the rows are gone; best effort
    (``robust``): a cache that is down is logged and does not undo the deletion."""
    ids = list(session_ids)
    if ids:
        transaction.on_commit(lambda: session_summaries_forget(ids), robust=True)


@transaction.atomic
def learner_data_erase(*, learner: User) -> dict:
    """Erase a learner's sessions and readings (and any kept face crops).

    Open sessions are first ended through ``session_end`` (reason ``data_erased``), so the
    course's live dashboard and the session's stream are told before the rows go.
    Consent records are kept as the legal record of what was agreed (active ones are revoked).
    Course reports are computed from readings on request, so aggregates that included this
    learner change with the next request; nothing precomputed needs rebuilding.
    """

    now = timezone.now()
    for s in LearnerSession.objects.filter(learner=learner, status=LearnerSession.Status.ACTIVE):
        session_end(session=s, reason="data_erased")
    readings = Reading.objects.filter(session__learner=learner)
    frames_discard_pending(readings=readings)  # raw bytes still waiting for inference go too
    n_readings = readings.count()
    readings.delete()
    sessions = LearnerSession.objects.filter(learner=learner)
    ids = list(sessions.values_list("pk", flat=True))
    sessions.delete()
    _live_summaries_forget(session_ids=ids)
    revoked = Consent.objects.filter(learner=learner, revoked_at__isnull=True).update(
        revoked_at=now
    )
    return {"readings": n_readings, "sessions": len(ids), "consents_revoked": revoked}


@transaction.atomic
def session_delete(*, session: LearnerSession) -> int:
    """Delete a session and its readings (an admin's delete). An open one is first ended
    (reason ``deleted``) so the dashboard and the session's stream are told; raw bytes of its
    frames still waiting for inference are deleted on commit. Returns readings deleted."""

    session_end(session=session, reason="deleted")
    readings = Reading.objects.filter(session=session)
    frames_discard_pending(readings=readings, error="deleted")
    n = readings.count()
    readings.delete()
    LearnerSession.objects.filter(pk=session.pk).delete()
    _live_summaries_forget(session_ids=[session.pk])
    return n


@transaction.atomic
def enrollment_delete(*, enrollment: Enrollment) -> dict:
    """Remove a learner from a course (an admin's delete). The learner's active consent for
    the course is revoked and their open sessions in it are ended (reason ``unenrolled``,
    the dashboard and the session's stream are told), and frames still waiting for inference
    are not analysed, as for ``consent_revoke``: nothing more is taken, and enrolling the
    learner again later asks for consent again. Past sessions and readings stay (they fall
    under retention, or ``learner_data_erase``). Returns what was ended and revoked."""

    enrollment = Enrollment.objects.select_for_update().filter(pk=enrollment.pk).first()
    if enrollment is None:
        return {"sessions_ended": 0, "consents_revoked": 0}
    learner, course = enrollment.learner, enrollment.course
    n_revoked = Consent.objects.filter(
        learner=learner, course=course, revoked_at__isnull=True
    ).update(revoked_at=timezone.now())
    # sessions first, then the discard: see consent_grant
    n_ended = sessions_end_open(learner=learner, course=course, reason="unenrolled")
    frames_discard_pending(
        readings=Reading.objects.filter(session__learner=learner, session__course=course)
    )
    Enrollment.objects.filter(pk=enrollment.pk).delete()
    return {"sessions_ended": n_ended, "consents_revoked": n_revoked}


@transaction.atomic
def user_delete(*, user: User) -> dict:
    """Delete an account (an admin's delete): its learning data is erased first through
    ``learner_data_erase`` (open sessions ended and announced, pending frames' bytes deleted),
    the labels it gave as a reviewer are taken back (each reading's agreed label settles on
    the other reviews), then the user with their consent records, enrollments and tokens."""
    erased = learner_data_erase(learner=user)
    label_reviews_withdraw(reviewer=user)
    User.objects.filter(pk=user.pk).delete()
    return erased


@transaction.atomic
def course_delete(*, course: Course) -> int:
    """Delete a course with everything taken in it; open sessions are first ended (reason
    ``course_deleted``) so learners' streams are told. Returns the sessions deleted."""

    for s in LearnerSession.objects.filter(course=course, status=LearnerSession.Status.ACTIVE):
        session_end(session=s, reason="course_deleted")
    frames_discard_pending(readings=Reading.objects.filter(session__course=course), error="deleted")
    ids = list(LearnerSession.objects.filter(course=course).values_list("pk", flat=True))
    Reading.objects.filter(session__course=course).delete()
    Course.objects.filter(pk=course.pk).delete()
    _live_summaries_forget(session_ids=ids)
    return len(ids)


def readings_purge_expired(*, now=None) -> dict[int, int]:
    """Delete readings older than each course's retention; returns {course_id: deleted}."""

    now = now or timezone.now()
    deleted = {}
    for course in Course.objects.all().only("id", "retention_days"):
        cutoff = now - timedelta(days=course.retention_days)
        # count readings alone, not the reviews of them deleted with them (CASCADE)
        _, by_model = Reading.objects.filter(
            session__course=course, captured_at__lt=cutoff
        ).delete()
        n = by_model.get(Reading._meta.label, 0)
        if n:
            deleted[course.pk] = n
    return deleted


def sessions_purge_expired(*, now=None) -> dict[int, int]:
    """Delete ENDED sessions (and their readings) that ended more than each course's retention
    ago; returns {course_id: sessions deleted}. Active sessions are never touched."""

    now = now or timezone.now()
    deleted = {}
    for course in Course.objects.all().only("id", "retention_days"):
        cutoff = now - timedelta(days=course.retention_days)
        with transaction.atomic():
            expired = LearnerSession.objects.filter(
                course=course, status=LearnerSession.Status.ENDED, ended_at__lt=cutoff
            )
            _live_summaries_forget(session_ids=expired.values_list("pk", flat=True))
            Reading.objects.filter(session__in=expired).delete()
            n = expired.delete()[1].get(LearnerSession._meta.label, 0)
        if n:
            deleted[course.pk] = n
    return deleted


def retention_purge_expired(*, now=None) -> dict[str, dict[int, int]]:
    """Everything past retention: readings by capture time, then ended sessions by end time
    (with their browser ``client_info``). Idempotent: re-running deletes nothing."""
    now = now or timezone.now()
    return {
        "readings": readings_purge_expired(now=now),
        "sessions": sessions_purge_expired(now=now),
    }
