"""Reads for the label review page: who may review, the queue, its progress, and how far
reviewers agree with each other and with the model (docs/review.md)."""

from __future__ import annotations

from collections import defaultdict

from django.conf import settings
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce

from emotion import agreement
from emotion.models import LabelReview, Reading
from ml.classes import EMOTIONS

#: kappa over fewer doubly reviewed readings than this is noise, so none is shown
KAPPA_MIN_PAIRS = 20

#: queue groups, first to last: what the model doubted, then the random sample, then the rest
REASON_ORDER = (Reading.ReviewReason.UNCERTAIN, Reading.ReviewReason.SAMPLE)


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


def review_refusal(*, reading: Reading) -> str | None:
    """Why ``reading`` cannot take a reviewer's label, or None when it can."""
    if reading.label is None:
        return (
            "No expression was estimated for this reading (engagement-only session, no face, "
            "or not analysed): the learner did not agree to having it labelled."
        )
    if not reading.face_crop:
        return "No face crop was kept for this reading: there is no face to judge."
    return None


def _second_review_bucket():
    """``agreement.second_review_bucket`` of the reading's id, in SQL."""
    p, m = agreement.SECOND_REVIEW_PRIME, agreement.SECOND_REVIEW_MULTIPLIER
    return (F("id") % p) * m % p % agreement.SECOND_REVIEW_BUCKETS


def review_queue(*, reviewer):
    """The readings waiting for ``reviewer``, in queue order, each annotated with ``n_reviews``
    (the reviews it has: 0 first review, 1 second, 2 tie-break) and ``reason_rank``.

    Never one ``reviewer`` reviewed. A reading with no review yet; one with one review (by
    someone else) if it is in the ``REVIEW_SECOND_SHARE`` picked by its id; one whose two
    reviews disagree, for a third. Order: "uncertain", then "sample", then the rest, oldest
    first within each."""
    reviews = LabelReview.objects.filter(reading=OuterRef("pk"))
    count = reviews.order_by().values("reading").annotate(c=Count("pk")).values("c")
    cutoff = agreement.second_review_cutoff(settings.REVIEW_SECOND_SHARE)
    ranks = [When(review_reason=r, then=Value(i)) for i, r in enumerate(REASON_ORDER)]
    return (
        review_readings()
        .annotate(
            n_reviews=Coalesce(Subquery(count, output_field=IntegerField()), 0),
            reason_rank=Case(*ranks, default=Value(len(REASON_ORDER))),
            bucket=_second_review_bucket(),
        )
        .exclude(Exists(reviews.filter(reviewer=reviewer)))
        .filter(
            # a label with no review row was set before reviews were recorded: settled
            Q(n_reviews=0, reviewed_label__isnull=True)
            | Q(n_reviews=1, bucket__lt=cutoff)
            | Q(n_reviews=2, reviewed_label__isnull=True)
        )
        .order_by("reason_rank", "pk")
    )


def review_shows_model(*, reading: Reading) -> bool:
    """Whether the page shows the model's guess beside ``reading``'s face (annotated by
    ``review_queue``). Only where the guess cannot bias a measurement: a first review of a
    reading neither in the random sample (the model's accuracy) nor in the second-review share
    (the reviewers' agreement). Second and tie-break reviews are blind to the model's guess
    and to every earlier reviewer's label."""
    if reading.review_reason == Reading.ReviewReason.SAMPLE or reading.n_reviews:
        return False
    cutoff = agreement.second_review_cutoff(settings.REVIEW_SECOND_SHARE)
    return agreement.second_review_bucket(reading.pk) >= cutoff


def review_next(*, reviewer, after: int | None = None, at: int | None = None) -> Reading | None:
    """The reading to show ``reviewer``: ``at`` if it still waits for them (a label that was
    refused), else the next in queue order after ``after`` (a skipped or just labelled one),
    starting over from the first when none is left after it."""
    todo = review_queue(reviewer=reviewer)
    if at is not None and (reading := todo.filter(pk=at).first()) is not None:
        return reading
    if after is not None:
        reason = Reading.objects.filter(pk=after).values_list("review_reason", flat=True).first()
        if reason is not None:
            rank = REASON_ORDER.index(reason) if reason in REASON_ORDER else len(REASON_ORDER)
            later = Q(reason_rank__gt=rank) | Q(reason_rank=rank, pk__gt=after)
            if (reading := todo.filter(later).first()) is not None:
                return reading
    return todo.first()


def review_progress(*, reviewer) -> dict:
    """``todo``: readings waiting for ``reviewer``; ``reviewed``: reviewable readings with at
    least one review (or a label from before reviews were recorded); ``total``: reviewable
    readings."""
    readings = review_readings()
    reviewed = Exists(LabelReview.objects.filter(reading=OuterRef("pk")))
    return {
        "todo": review_queue(reviewer=reviewer).count(),
        "reviewed": readings.filter(reviewed | Q(reviewed_label__isnull=False)).count(),
        "total": readings.count(),
    }


def review_pairs() -> list[tuple[str, str]]:
    """(first label, second label) of every reading with two reviews or more: its two earliest
    reviews, in the order they were given."""
    doubly = (
        LabelReview.objects.order_by()
        .values("reading")
        .annotate(c=Count("pk"))
        .filter(c__gte=2)
        .values("reading")
    )
    labels = defaultdict(list)
    rows = LabelReview.objects.filter(reading__in=doubly).order_by("reading_id", "created_at", "pk")
    for reading_id, label in rows.values_list("reading_id", "label"):
        labels[reading_id].append(label)
    return [(first[0], first[1]) for first in labels.values()]


def model_agreement() -> list[dict]:
    """The model's top label against the reviewed label, by why the reading was queued:
    ``n`` readings with a reviewed label, ``accuracy`` (0–1, None for none). The "sample" row
    is the unbiased estimate of the model's accuracy on this school's faces."""
    rows = (
        Reading.objects.filter(reviewed_label__isnull=False, label__isnull=False)
        .order_by()
        .values("review_reason")
        .annotate(n=Count("pk"), right=Count("pk", filter=Q(label=F("reviewed_label"))))
    )
    by_reason = {r["review_reason"]: r for r in rows}
    out = []
    for reason, title in Reading.ReviewReason.choices:
        row = by_reason.get(reason, {"n": 0, "right": 0})
        accuracy = row["right"] / row["n"] if row["n"] else None
        out.append(
            {"reason": reason or "none", "title": title, "n": row["n"], "accuracy": accuracy}
        )
    order = [r or "none" for r in REASON_ORDER]
    return sorted(out, key=lambda r: order.index(r["reason"]) if r["reason"] in order else 9)


def review_agreement() -> dict:
    """How far reviewers agree: Cohen's kappa between the first and the second reviewer over
    readings with two reviews or more (``kappa`` None, with ``kappa_note`` saying why, below
    ``KAPPA_MIN_PAIRS`` of them), their percent ``agreement`` and ``pairs``; and ``model``,
    the model's agreement with the reviewed labels (``model_agreement``)."""
    pairs = review_pairs()
    kappa, note = None, ""
    if len(pairs) < KAPPA_MIN_PAIRS:
        note = f"needs at least {KAPPA_MIN_PAIRS} doubly reviewed readings ({len(pairs)} so far)"
    else:
        kappa = agreement.cohen_kappa(pairs, EMOTIONS)
        if kappa is None:
            note = "undefined: both reviewers gave every reading the same one label"
    return {
        "pairs": len(pairs),
        "kappa": kappa,
        "kappa_note": note,
        "agreement": agreement.percent_agreement(pairs),
        "min_pairs": KAPPA_MIN_PAIRS,
        "model": model_agreement(),
    }
