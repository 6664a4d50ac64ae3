from __future__ import annotations

from django.db import models

from ml.classes import EMOTIONS

EMOTION_CHOICES = [(e, e) for e in EMOTIONS]


class ModelVersion(models.Model):
    """A checkpoint that produced readings (identified by its file hash and precision)."""

    name = models.CharField(max_length=100)
    checkpoint_sha256 = models.CharField(max_length=64)
    #: the network that ran: the checkpoint's fp32 weights, or its int8 model (CPU workers)
    precision = models.CharField(max_length=8, default="fp32")
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["checkpoint_sha256", "precision"], name="unique_model_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.checkpoint_sha256[:12]}, {self.precision})"


class ReadingQuerySet(models.QuerySet):
    def analysed(self) -> ReadingQuerySet:
        """The readings the server analysed. A frame it could not analyse (``error`` set:
        ``frame_expired``, ``undecodable``, ``consent_revoked``…) also has ``analysed_at`` and
        no face, but says nothing about the learner, so it never counts as an absent frame."""
        return self.filter(analysed_at__isnull=False, error="")


class Reading(models.Model):
    """The analysis of one frame of a learner session. The raw frame is never stored here."""

    #: what inference writes (everything else is set when the frame is accepted)
    ANALYSIS_FIELDS = (
        "analysed_at",
        "error",
        "face_found",
        "box",
        "cues",
        "attentive",
        "probs",
        "label",
        "confidence",
        "model_version",
        "face_crop",
    )

    session = models.ForeignKey(
        "tutoring.LearnerSession", on_delete=models.CASCADE, related_name="readings"
    )
    sequence = models.PositiveIntegerField()
    captured_at = models.DateTimeField()
    received_at = models.DateTimeField()
    analysed_at = models.DateTimeField(null=True, blank=True)  # NULL = waiting for inference
    # when the safety net last queued this pending reading again (NULL: never)
    requeued_at = models.DateTimeField(null=True, blank=True)
    # deliveries that gave this frame to the model and never came back (the worker was
    # killed or crashed mid-batch); one that returns, with or without an error, takes its run
    # back. A batch holding such a reading is split, and a frame lost twice is given up.
    # (no CHECK constraint: adding the column stays a catalogue change on a large table)
    lost_runs = models.SmallIntegerField(default=0)
    # why a frame could not be analysed ("frame_expired", "undecodable", "consent_revoked");
    # empty when it was
    error = models.CharField(max_length=32, blank=True, default="")
    face_found = models.BooleanField(default=False)

    class FaceSource(models.TextChoices):
        DEVICE = "device", "learner's device"
        SERVER = "server", "server"

    # where the face was found: on the learner's device (a crop and cues, or cues alone, were
    # sent) or by the server in a full picture
    face_source = models.CharField(
        max_length=8, choices=FaceSource.choices, default=FaceSource.SERVER
    )
    box = models.JSONField(null=True, blank=True)  # [x, y, w, h] in frame pixels
    cues = models.JSONField(default=dict, blank=True)  # attention cues (centre offset, area…)
    attentive = models.BooleanField(default=False)
    # Emotion fields stay NULL in engagement-only sessions.
    probs = models.JSONField(null=True, blank=True)
    label = models.CharField(max_length=16, choices=EMOTION_CHOICES, null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="readings"
    )
    # Only when the course opts in (keep_face_crops): the 48×48 grayscale crop as PNG bytes.
    face_crop = models.BinaryField(null=True, blank=True)
    # Label review (admin): what a human says the expression is.
    reviewed_label = models.CharField(max_length=16, choices=EMOTION_CHOICES, null=True, blank=True)
    reviewed_by = models.ForeignKey(
        "tutoring.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    objects = ReadingQuerySet.as_manager()

    class Meta:
        ordering = ["session_id", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["session", "sequence"], name="unique_session_sequence")
        ]
        indexes = [
            models.Index(fields=["session", "captured_at"]),
            models.Index(fields=["session", "received_at"]),
            # the few readings still waiting for inference (re-queue, consent revoke, erase)
            models.Index(
                fields=["session"],
                condition=models.Q(analysed_at__isnull=True),
                name="reading_pending_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"reading {self.session_id}#{self.sequence}"
