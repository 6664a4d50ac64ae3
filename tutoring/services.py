"""Writes for the tutoring domain (HackSoft style: ``<entity>_<action>(*, ...)``)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from knox.models import AuthToken

from config.broadcast import course_group, group_send, session_group
from tutoring.models import Consent, Course, Enrollment, LearnerSession, User
from tutoring.signals import consent_ended

DEMO_PASSWORD = "demo-pass-123"


@transaction.atomic
def user_create(*, username: str, password: str, role: str, **fields) -> User:
    user = User(username=username, role=role, **fields)
    user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    return user


# --- API tokens (knox: only a digest of each key is stored) --------------------------------------


@transaction.atomic
def api_token_create(*, user: User) -> tuple[AuthToken, str]:
    """A new API token for ``user``: the stored row and its key, which exists only here (the
    database keeps its SHA-512 digest). It expires after ``API_TOKEN_TTL_HOURS``.

    The user's expired tokens are deleted, and the oldest live ones beyond
    ``API_TOKEN_LIMIT_PER_USER``: a script that signs in on every run without signing out
    keeps working, while one account never holds more than that many valid keys.
    """
    User.objects.select_for_update().filter(pk=user.pk).exists()  # one creation at a time
    tokens = AuthToken.objects.filter(user=user)
    tokens.filter(expiry__lte=timezone.now()).delete()
    keep = settings.API_TOKEN_LIMIT_PER_USER - 1
    oldest = list(tokens.order_by("-created", "-expiry").values_list("digest", flat=True)[keep:])
    if oldest:
        AuthToken.objects.filter(digest__in=oldest).delete()
    return AuthToken.objects.create(user=user)


def api_token_revoke(*, token: AuthToken) -> None:
    token.delete()


def api_token_revoke_all(*, user) -> int:
    """Revoke every API token of ``user``; returns how many there were."""
    return AuthToken.objects.filter(user=user).delete()[0]


@transaction.atomic
def course_create(*, title: str, instructors, learners=(), **policy) -> Course:
    course = Course(title=title, **policy)
    course.full_clean()
    course.save()
    for u in instructors:
        if not u.is_instructor:
            raise ValidationError(f"{u.username} is not an instructor")
    course.instructors.set(instructors)
    for learner in learners:
        course_enroll(course=course, learner=learner)
    return course


def course_policy_widened(*, before: Course, after: Course) -> list[str]:
    """The changes of a course's data policy that take more from learners than they agreed to
    (narrowing ones apply at once and need no new consent)."""
    changes = []
    if after.emotion_inference_enabled and not before.emotion_inference_enabled:
        changes.append("emotion inference turned on")
    if after.keep_face_crops and not before.keep_face_crops:
        changes.append("face thumbnails kept for label review")
    if after.allow_full_pictures and not before.allow_full_pictures:
        changes.append("full camera pictures sent to the server")
    if after.retention_days > before.retention_days:
        changes.append(f"retention {before.retention_days} → {after.retention_days} days")
    return changes


@transaction.atomic
def course_update(*, course: Course) -> list[str]:
    """Save an edited course (the admin's form); return the widening changes of its policy.

    When the data policy now takes more than before and the policy version was not changed by
    hand, a new version is stamped. Either way a new version ends the course's open sessions
    (``policy_changed``, the dashboard is told): no frame is taken under terms the learner has
    not seen. Consent under an older version does not start sessions or take frames; the
    learner's course page asks for consent again.
    """
    before = Course.objects.select_for_update().get(pk=course.pk)
    widened = course_policy_widened(before=before, after=course)
    if course.consent_policy_version != before.consent_policy_version:
        course_policy_version_check(course=course)
    elif widened:
        course.consent_policy_version = _policy_version_new(course=course)
    course.full_clean()
    course.save()
    if course.consent_policy_version != before.consent_policy_version:
        for s in LearnerSession.objects.filter(course=course, status=LearnerSession.Status.ACTIVE):
            session_end(session=s, reason="policy_changed")
    return widened


def _policy_versions_used(*, course: Course) -> set[str]:
    used = set(Consent.objects.filter(course=course).values_list("policy_version", flat=True))
    used.add(
        Course.objects.filter(pk=course.pk).values_list("consent_policy_version", flat=True)[0]
    )
    return used


def _policy_version_new(*, course: Course) -> str:
    """A version stamp (date and time) this course has never had: two edits in the same second
    get ``…-2``, ``…-3``."""
    used = _policy_versions_used(course=course)
    stamp = timezone.now().strftime("%Y-%m-%d.%H%M%S")
    version, n = stamp, 1
    while version in used:
        n += 1
        version = f"{stamp}-{n}"
    return version


def course_policy_version_check(*, course: Course) -> None:
    """A version set by hand must be new: going back to one that consents were given under
    would make those consents (to other terms) current again."""
    version = course.consent_policy_version
    if course.pk is not None and version in _policy_versions_used(course=course):
        current = Course.objects.get(pk=course.pk).consent_policy_version
        if version != current:
            raise ValidationError(
                {
                    "consent_policy_version": (
                        f"version {version!r} was used before in this course: consent given "
                        "under it would count again; choose a version it never had"
                    )
                }
            )


def consent_current(*, consent: Consent | None, course: Course) -> bool:
    """Whether ``consent`` is active and was given under the course's policy version."""
    return (
        consent is not None
        and consent.revoked_at is None
        and consent.policy_version == course.consent_policy_version
    )


@transaction.atomic
def course_enroll(*, course: Course, learner: User) -> Enrollment:
    if not learner.is_learner:
        raise ValidationError(f"{learner.username} is not a learner")
    enrollment, _ = Enrollment.objects.get_or_create(course=course, learner=learner)
    return enrollment


def _lock_enrollment(*, learner: User, course: Course) -> Enrollment | None:
    """Lock the learner's enrollment row: consent changes for one learner and course run one
    at a time (a double-submitted form waits for the first submission, then sees its result)."""
    return Enrollment.objects.select_for_update().filter(course=course, learner=learner).first()


def sessions_end_open(*, learner: User, course: Course, reason: str) -> int:
    """End the learner's open sessions in ``course`` through ``session_end`` (which tells the
    live dashboard and the session's stream); returns how many were ended."""
    open_sessions = LearnerSession.objects.filter(
        learner=learner, course=course, status=LearnerSession.Status.ACTIVE
    )
    n = 0
    for s in open_sessions:
        session_end(session=s, reason=reason)
        n += 1
    return n


@transaction.atomic
def consent_grant(
    *, learner: User, course: Course, engagement: bool = True, emotion: bool = False
) -> Consent:
    """Grant consent for ``course``.

    Granting what is already granted (same scopes, same policy version) is idempotent: the
    active consent is returned unchanged and open sessions go on (a double-submitted form).
    A different grant supersedes the active one (revoked now); the learner's open sessions,
    which ingest under the superseded consent, are ended (reason ``consent_superseded``) so
    the learner starts a new one under the new terms rather than one that refuses frames.
    """
    if _lock_enrollment(learner=learner, course=course) is None:
        raise PermissionDenied("only learners enrolled in the course can consent")
    if not engagement:
        raise ValidationError({"scope": "the engagement scope is required for any capture"})
    if emotion and not course.emotion_inference_enabled:
        raise ValidationError(
            {"scope": "this course runs in engagement-only mode: emotion consent is not asked"}
        )
    now = timezone.now()
    active = (
        Consent.objects.select_for_update()
        .filter(learner=learner, course=course, revoked_at__isnull=True)
        .first()
    )
    if active is not None:
        if (
            active.engagement == engagement
            and active.emotion == emotion
            and active.policy_version == course.consent_policy_version
        ):
            return active
        active.revoked_at = now
        active.save(update_fields=["revoked_at"])
        # sessions first: ending one waits for its row lock, i.e. for an upload in progress to
        # commit its readings, which the signal's receivers (emotion discards the frames still
        # waiting for inference) then see
        sessions_end_open(learner=learner, course=course, reason="consent_superseded")
        consent_ended.send(sender=Consent, consent=active)
    return Consent.objects.create(
        learner=learner,
        course=course,
        engagement=engagement,
        emotion=emotion,
        policy_version=course.consent_policy_version,
        granted_at=now,
    )


@transaction.atomic
def consent_revoke(*, learner: User, course: Course) -> Consent:
    """Revoke the active consent and end the learner's open sessions in the course."""
    _lock_enrollment(learner=learner, course=course)
    consent = (
        Consent.objects.select_for_update()
        .filter(learner=learner, course=course, revoked_at__isnull=True)
        .first()
    )
    if consent is None:
        raise ValidationError("there is no active consent to revoke")
    consent.revoked_at = timezone.now()
    consent.save(update_fields=["revoked_at"])
    sessions_end_open(learner=learner, course=course, reason="consent_revoked")
    consent_ended.send(sender=Consent, consent=consent)  # after: see consent_grant
    return consent


@transaction.atomic
def session_start(
    *, learner: User, course: Course, client_info: dict | None = None
) -> LearnerSession:
    if not Enrollment.objects.filter(course=course, learner=learner).exists():
        raise PermissionDenied("you are not enrolled in this course")
    consent = Consent.objects.filter(
        learner=learner, course=course, revoked_at__isnull=True, engagement=True
    ).first()
    if consent is None:
        raise PermissionDenied("no active consent for this course: grant consent first")
    if not consent_current(consent=consent, course=course):
        raise PermissionDenied(
            f"this course's data policy changed (version {course.consent_policy_version}; "
            f"you agreed to {consent.policy_version}): read it and give consent again"
        )
    for s in LearnerSession.objects.select_for_update().filter(
        learner=learner, course=course, status=LearnerSession.Status.ACTIVE
    ):
        session_end(session=s, reason="superseded")
    session = LearnerSession.objects.create(
        learner=learner,
        course=course,
        consent=consent,
        started_at=timezone.now(),
        emotion_enabled=course.emotion_inference_enabled and consent.emotion,
        client_info=_clean_client_info(client_info or {}),
    )
    payload = {
        "session": session.pk,
        "learner": learner.pk,
        "learner_name": learner.display_name,
    }
    transaction.on_commit(lambda: group_send(course_group(course.pk), "session.started", payload))
    return session


def _clean_client_info(info: dict) -> dict:
    allowed = ("user_agent", "screen", "camera", "timezone", "app_version")
    return {k: str(info[k])[:300] for k in allowed if k in info}


@transaction.atomic
def session_end(*, session: LearnerSession, reason: str = "ended") -> LearnerSession:
    session = LearnerSession.objects.select_for_update().get(pk=session.pk)
    if session.status != LearnerSession.Status.ENDED:
        session.status = LearnerSession.Status.ENDED
        session.ended_at = timezone.now()
        session.end_reason = reason
        session.save(update_fields=["status", "ended_at", "end_reason"])
        payload = {"session": session.pk, "learner": session.learner_id, "reason": reason}

        def notify():
            group_send(course_group(session.course_id), "session.ended", payload)
            group_send(session_group(session.pk), "session.ended", payload)

        transaction.on_commit(notify)
    return session


def sessions_end_idle(*, now=None, idle_minutes: int | None = None) -> list[int]:
    """End open sessions that took no frame for ``idle_minutes`` (``SESSION_IDLE_MINUTES``):
    a learner who closed the tab, lost the network or whose laptop went to sleep leaves an
    open session, which no other code path ends; ended sessions fall under retention.

    Idle since the last frame, or since the start when none came. Each is ended through
    ``session_end`` (reason ``idle``), so the dashboard and the session's stream are told;
    a frame that arrives meanwhile keeps the session open (checked again under its row lock).
    Returns the ids of the sessions ended.
    """
    from django.conf import settings
    from django.db.models.functions import Coalesce

    now = now or timezone.now()
    idle = settings.SESSION_IDLE_MINUTES if idle_minutes is None else idle_minutes
    cutoff = now - timedelta(minutes=idle)
    candidates = (
        LearnerSession.objects.filter(status=LearnerSession.Status.ACTIVE)
        .annotate(active_at=Coalesce("last_frame_at", "started_at"))
        .filter(active_at__lt=cutoff)
        .values_list("pk", flat=True)
    )
    ended = []
    for pk in list(candidates):
        with transaction.atomic():
            s = (
                LearnerSession.objects.select_for_update()
                .filter(pk=pk, status=LearnerSession.Status.ACTIVE)
                .first()
            )
            if s is None or (s.last_frame_at or s.started_at) >= cutoff:
                continue  # ended, or a frame came, since the first look
            session_end(session=s, reason="idle")
            ended.append(pk)
    return ended


DEMO_USERS = [
    # username, role, first name, last name: distinct names, so that two learners' tiles,
    # alerts and report rows can be told apart
    ("admin", User.Role.ADMIN, "Rui", "Costa"),
    ("instructor1", User.Role.INSTRUCTOR, "Grace", "Okafor"),
    ("instructor2", User.Role.INSTRUCTOR, "Tomás", "Novak"),
    ("learner1", User.Role.LEARNER, "Amara", "Lindqvist"),
    ("learner2", User.Role.LEARNER, "Ben", "Takahashi"),
    ("learner3", User.Role.LEARNER, "Chloé", "Martin"),
]
DEMO_COURSES = [
    # title, instructor, learners, policy
    ("Algebra I", "instructor1", ["learner1", "learner2"], {"emotion_inference_enabled": True}),
    (
        "Biology (engagement-only)",
        "instructor2",
        ["learner2", "learner3"],
        {"emotion_inference_enabled": False},
    ),
]


def _demo_user_rename(*, user: User, first_name: str, last_name: str) -> bool:
    """Give a demo account its demo name if it still carries the placeholder of earlier
    seeds (first name = the username without digits, titled; no last name). A name anyone
    has set is kept. Whether it was renamed."""
    placeholder = user.username.rstrip("0123456789").title()
    if user.first_name != placeholder or user.last_name:
        return False
    user.first_name, user.last_name = first_name, last_name
    user.save(update_fields=["first_name", "last_name"])
    return True


@transaction.atomic
def demo_seed(*, only_if_no_users: bool = False) -> dict:
    """Create the demo accounts and courses that are missing; never change what exists.

    An account that already exists (made by an earlier seed or by an operator under a demo
    name) keeps its password, flags, token, enrollments and consents: the published demo
    password is set only on accounts created now, and only they get a token (returned, to be
    printed once). Enrollments and consents are made only where the course or the learner is
    created now, so a learner removed from a demo course, or who revoked consent, stays so.
    With ``only_if_no_users`` (``make run``) nothing is created on a database that has any
    user. The one change made to an existing demo account: the placeholder name earlier seeds
    gave it ("Learner" for every learner) becomes its demo name, if it still has it. Returns
    what was created, the demo usernames renamed so, and those left as they were.
    """
    result = {"users": [], "courses": [], "existing": [], "renamed": [], "skipped": False}
    if only_if_no_users and User.objects.exists():
        result["skipped"] = True
        return result
    by_name, created = {}, set()
    for username, role, first_name, last_name in DEMO_USERS:
        user = User.objects.filter(username=username).first()
        if user is not None:
            by_name[username] = user
            renamed = _demo_user_rename(user=user, first_name=first_name, last_name=last_name)
            result["renamed" if renamed else "existing"].append(username)
            continue
        admin = role == User.Role.ADMIN
        user = user_create(
            username=username,
            password=DEMO_PASSWORD,
            role=role,
            first_name=first_name,
            last_name=last_name,
            is_staff=admin,
            is_superuser=admin,
        )
        token, key = api_token_create(user=user)
        by_name[username] = user
        created.add(username)
        result["users"].append(
            {
                "username": username,
                "role": role,
                "password": DEMO_PASSWORD,
                "token": key,
                "token_expiry": token.expiry,
            }
        )
    for title, instructor, learners, policy in DEMO_COURSES:
        course = Course.objects.filter(title=title).first()
        new_course = course is None
        if new_course:
            teacher = by_name[instructor]
            course = course_create(
                title=title, instructors=[teacher] if teacher.is_instructor else [], **policy
            )
        enrolled = []
        for name in learners:
            learner = by_name[name]
            if not (new_course or name in created) or not learner.is_learner:
                continue
            course_enroll(course=course, learner=learner)
            enrolled.append(name)
            if name in created:  # consent only for a learner account made now, as its fiction
                consent_grant(
                    learner=learner,
                    course=course,
                    engagement=True,
                    emotion=course.emotion_inference_enabled,
                )
        if new_course:
            result["courses"].append(
                {"id": course.pk, "title": title, "instructor": instructor, "learners": enrolled}
            )
    return result
