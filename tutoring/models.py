from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


class User(AbstractUser):
    """A person using the platform. ``role`` is the one way roles are expressed."""

    class Role(models.TextChoices):
        LEARNER = "learner", "Learner"
        INSTRUCTOR = "instructor", "Instructor"
        ADMIN = "admin", "Admin / reviewer"

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.LEARNER)

    @property
    def display_name(self) -> str:
        """How pages, live views and reports name this person: the full name, else the
        username (the one way, so a tile, an alert and a report name them alike)."""
        return self.get_full_name() or self.username

    @property
    def is_instructor(self) -> bool:
        return self.role == self.Role.INSTRUCTOR

    @property
    def is_learner(self) -> bool:
        return self.role == self.Role.LEARNER

    @property
    def is_platform_admin(self) -> bool:
        return self.role == self.Role.ADMIN or self.is_superuser


class Course(models.Model):
    """A course and its data policy."""

    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    instructors = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="teaching", limit_choices_to={"role": "instructor"}
    )
    learners = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Enrollment", related_name="enrolled_courses"
    )
    # Off = engagement-only mode (e.g. EU AI Act Art. 5(1)(f): no emotion inference in education).
    emotion_inference_enabled = models.BooleanField(default=True)
    # Off by default: no face image is kept after inference.
    keep_face_crops = models.BooleanField(default=False)
    retention_days = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(3650)]
    )
    consent_policy_version = models.CharField(max_length=32, default="2026-11")
    capture_fps = models.FloatField(
        default=2.0, validators=[MinValueValidator(0.2), MaxValueValidator(10)]
    )
    # The recorder finds the face on the learner's device and sends a crop and cues (or cues
    # alone); full pictures go to the server only where the device cannot keep up, and only
    # where this allows it.
    allow_full_pictures = models.BooleanField(default=True)
    # the lowest capture rate the device path may drop to before it falls back (or gives up)
    min_capture_fps = models.FloatField(
        default=0.2, validators=[MinValueValidator(0.05), MaxValueValidator(10)]
    )
    # facing the screen: head pose plus gaze within this many degrees, each axis
    attention_cone_degrees = models.FloatField(
        default=25.0, validators=[MinValueValidator(5), MaxValueValidator(90)]
    )
    # a reading whose top probability is below this is shown as "uncertain" and left out of
    # the emotion mix; empty: the model's own default, chosen on its risk-coverage curve
    uncertainty_threshold = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
    )
    alert_absent_seconds = models.PositiveIntegerField(default=30)
    alert_disengaged_seconds = models.PositiveIntegerField(default=60)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.title


class Enrollment(models.Model):
    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="enrollments")
    learner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="enrollments"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["course", "learner"], name="unique_enrollment")
        ]

    def __str__(self) -> str:
        return f"{self.learner.display_name} in {self.course}"


class Consent(models.Model):
    """One grant of consent; revoking stamps ``revoked_at``. Rows are never edited otherwise,
    so the table is the history."""

    learner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="consents"
    )
    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="consents")
    engagement = models.BooleanField(default=True)
    emotion = models.BooleanField(default=False)
    policy_version = models.CharField(max_length=32)
    granted_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-granted_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["learner", "course"],
                condition=Q(revoked_at__isnull=True),
                name="one_active_consent_per_learner_course",
            )
        ]

    def __str__(self) -> str:
        state = "active" if self.active else "revoked"
        return f"{self.learner.display_name} / {self.course}: {','.join(self.scopes)} ({state})"

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def scopes(self) -> list[str]:
        return [s for s in ("engagement", "emotion") if getattr(self, s)]


class LearnerSession(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        ENDED = "ended", "Ended"

    learner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="learner_sessions"
    )
    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="sessions")
    # RESTRICT: a consent record cannot be deleted on its own while sessions were taken under
    # it, but deleting the learner or the course (which takes the sessions too) can proceed
    consent = models.ForeignKey(Consent, on_delete=models.RESTRICT, related_name="sessions")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=32, blank=True)
    # emotion inference for this session: the course allows it AND the consent covers it
    emotion_enabled = models.BooleanField(default=False)
    client_info = models.JSONField(default=dict, blank=True)
    last_frame_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["course", "status"]),
            models.Index(fields=["learner"]),
            # the open sessions alone, for the idle check every 5 minutes
            models.Index(
                fields=["started_at"], condition=Q(status="active"), name="session_open_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"session {self.pk} of {self.learner.display_name} in {self.course}"

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.ACTIVE
