from __future__ import annotations

from django.db import models

from ml.classes import EMOTIONS

EMOTION_CHOICES = [(e, e) for e in EMOTIONS]


class ModelVersion(models.Model):
    """A checkpoint that produced readings (identified by its file hash and precision), and
    its place in the model registry.

    Promotion state belongs to the checkpoint: every row of one ``checkpoint_sha256`` (one
    per precision that ran it) carries the same ``status``. Exactly one checkpoint is
    ``active`` at a time; workers load its ``path`` at the start of a batch.
    """

    class Status(models.TextChoices):
        CANDIDATE = "candidate", "candidate"  # registered, not (yet) judged
        ACTIVE = "active", "active"  # what the workers run now
        RETIRED = "retired", "retired"  # was active; replaced by a newer promotion
        ROLLED_BACK = "rolled_back", "rolled back"  # was active; taken back by a rollback
        REFUSED = "refused", "refused"  # judged and not promoted (``decision`` says why)

    name = models.CharField(max_length=100)
    checkpoint_sha256 = models.CharField(max_length=64)
    #: the network that ran: the checkpoint's fp32 weights, or its int8 model (CPU workers)
    precision = models.CharField(max_length=8, default="fp32")
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    #: where the checkpoint file is (shared storage in production: every worker reads it)
    path = models.CharField(max_length=500, blank=True, default="")
    #: the checkpoint this one was fine-tuned from
    parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="children"
    )
    #: how it was made: the checkpoint's own recipe (command, hyper-parameters, data)
    recipe = models.JSONField(default=dict, blank=True)
    #: the promotion check: the figures compared, the tolerance, the outcome and its reason
    decision = models.JSONField(default=dict, blank=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

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
        "uncertain",
        "review_reason",
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
    # the top probability was below the course's threshold (or the model's default): shown as
    # "uncertain", not as ``label``, and left out of the emotion mix; ``label`` and ``probs``
    # stay stored for review and for measuring the threshold
    uncertain = models.BooleanField(default=False)
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="readings"
    )
    # Only when the course opts in (keep_face_crops): the 48×48 grayscale crop as PNG bytes.
    face_crop = models.BinaryField(null=True, blank=True)

    class ReviewReason(models.TextChoices):
        NONE = "", "not queued"
        UNCERTAIN = "uncertain", "uncertain"  # the model abstained: reviewed first
        SAMPLE = "sample", "random sample"  # a confident reading drawn at random

    # why this reading is in the review queue (set at analysis, only where a crop is kept)
    review_reason = models.CharField(
        max_length=12, choices=ReviewReason.choices, blank=True, default=""
    )
    # Label review: the label training uses (the reviewers' agreed label; see LabelReview).
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
            # the review queue: the few readings queued for review
            models.Index(
                fields=["review_reason", "id"],
                condition=~models.Q(review_reason=""),
                name="reading_review_queue_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"reading {self.session_id}#{self.sequence}"


class LabelReview(models.Model):
    """One reviewer's label for one reading. A reading takes up to two independent reviews;
    their agreement (Cohen's kappa) is what the review page reports, and a reading whose two
    reviewers disagree is not used for training until a third review settles it."""

    reading = models.ForeignKey(Reading, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(
        "tutoring.User", on_delete=models.CASCADE, related_name="label_reviews"
    )
    label = models.CharField(max_length=16, choices=EMOTION_CHOICES)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["reading_id", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["reading", "reviewer"], name="unique_reading_reviewer")
        ]

    def __str__(self) -> str:
        return f"review of {self.reading_id} by {self.reviewer_id}: {self.label}"
