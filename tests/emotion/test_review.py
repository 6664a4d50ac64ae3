"""Label review (/review/): the queue (uncertain, then the sample, then the rest; second and
tie-break reviews; never twice to one reviewer), ``reading_review`` settling the label
training uses, the blind page, the agreement figures, and who may review."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.test import Client

from emotion.agreement import second_review_bucket
from emotion.models import LabelReview, Reading
from emotion.selectors import (
    KAPPA_MIN_PAIRS,
    review_agreement,
    review_next,
    review_queue,
)
from emotion.services import reading_review, reading_review_withdraw
from emotion.views import shortcuts
from tests.conftest import ROOT
from tests.factories import AdminFactory, InstructorFactory, ReadingFactory, probs_for

UNCERTAIN, SAMPLE = Reading.ReviewReason.UNCERTAIN, Reading.ReviewReason.SAMPLE


def png() -> bytes:
    return cv2.imencode(".png", np.full((48, 48), 128, np.uint8))[1].tobytes()


def reviewer(name: str):
    return AdminFactory(username=name, is_staff=False, is_superuser=False)


@pytest.fixture
def rev(db):
    return reviewer("rev")


@pytest.fixture
def a_b_c(db):
    return reviewer("ann"), reviewer("bob"), reviewer("cat")


@pytest.fixture
def no_second(settings):
    settings.REVIEW_SECOND_SHARE = 0.0


@pytest.fixture
def all_second(settings):
    settings.REVIEW_SECOND_SHARE = 1.0


def crop(classroom, sequence: int, reason: str = "", label: str = "neutral") -> Reading:
    return ReadingFactory(
        session=classroom.session,
        sequence=sequence,
        face_crop=png(),
        review_reason=reason,
        probs=probs_for(label),
    )


@pytest.fixture
def queue(classroom):
    """Three readings with a crop and an estimate, one without a crop, one without an
    estimate (engagement only)."""
    with_crop = [crop(classroom, i) for i in range(3)]
    ReadingFactory(session=classroom.session, sequence=3)
    ReadingFactory(session=classroom.session, sequence=4, face_crop=png(), probs=None)
    return with_crop


def signed_in(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


def ids(qs) -> list[int]:
    return [r.pk for r in qs]


# -- reading_review: the label training uses ----------------------------------------------


def test_a_first_review_sets_the_label_and_a_reviewer_corrects_their_own(queue, a_b_c):
    a, _, _ = a_b_c
    r = reading_review(reading=queue[0], label="happy", reviewer=a)
    assert (r.reviewed_label, r.reviewed_by) == ("happy", a) and r.reviewed_at
    r = reading_review(reading=queue[0], label="sad", reviewer=a)  # a second thought
    assert r.reviewed_label == "sad" and r.reviews.count() == 1
    assert LabelReview.objects.get(reading=r, reviewer=a).label == "sad"


def test_two_reviews_agree_or_leave_no_label(queue, a_b_c):
    a, b, _ = a_b_c
    reading_review(reading=queue[0], label="happy", reviewer=a)
    r = reading_review(reading=queue[0], label="happy", reviewer=b)
    assert (r.reviewed_label, r.reviewed_by) == ("happy", b)
    reading_review(reading=queue[1], label="happy", reviewer=a)
    r = reading_review(reading=queue[1], label="fear", reviewer=b)
    assert r.reviewed_label is None and r.reviewed_by == b  # not trained on
    stored = Reading.objects.get(pk=queue[1].pk)
    assert stored.reviewed_label is None and stored.reviews.count() == 2


def test_a_third_review_settles_by_majority(queue, a_b_c):
    a, b, c = a_b_c
    for reading, third in ((queue[0], "fear"), (queue[1], "angry")):
        reading_review(reading=reading, label="happy", reviewer=a)
        reading_review(reading=reading, label="fear", reviewer=b)
        reading_review(reading=reading, label=third, reviewer=c)
    assert Reading.objects.get(pk=queue[0].pk).reviewed_label == "fear"
    assert Reading.objects.get(pk=queue[1].pk).reviewed_label is None  # all three differ
    # the second reviewer changes their mind: the majority follows
    assert reading_review(reading=queue[0], label="happy", reviewer=b).reviewed_label == "happy"


def test_withdrawing_a_review_settles_on_the_rest(queue, a_b_c):
    a, b, _ = a_b_c
    reading_review(reading=queue[0], label="happy", reviewer=a)
    reading_review(reading=queue[0], label="fear", reviewer=b)
    r = reading_review_withdraw(reading=queue[0], reviewer=b)
    assert (r.reviewed_label, r.reviewed_by) == ("happy", a)
    r = reading_review_withdraw(reading=queue[0], reviewer=a)
    assert (r.reviewed_label, r.reviewed_by, r.reviewed_at) == (None, None, None)


def test_only_an_estimated_expression_with_a_kept_crop_takes_a_label(queue, rev):
    no_crop, no_estimate = Reading.objects.filter(sequence__in=[3, 4]).order_by("sequence")
    with pytest.raises(ValidationError, match="did not agree"):
        reading_review(reading=no_estimate, label="sad", reviewer=rev)
    with pytest.raises(ValidationError, match="No face crop was kept"):
        reading_review(reading=no_crop, label="sad", reviewer=rev)
    with pytest.raises(ValidationError, match="unknown expression"):
        reading_review(reading=queue[0], label="bored", reviewer=rev)
    assert not LabelReview.objects.exists()


# -- the queue -------------------------------------------------------------------------------


def test_the_queue_takes_uncertain_then_the_sample_then_the_rest_oldest_first(
    classroom, rev, no_second
):
    rest, s1, u1, s2, u2 = (
        crop(classroom, k, reason)
        for k, reason in enumerate(["", SAMPLE, UNCERTAIN, SAMPLE, UNCERTAIN])
    )
    ReadingFactory(session=classroom.session, sequence=9, review_reason=UNCERTAIN)  # no crop
    assert ids(review_queue(reviewer=rev)) == [u1.pk, u2.pk, s1.pk, s2.pk, rest.pk]
    # skipping walks the same order across the groups, and comes back round
    assert review_next(reviewer=rev) == u1
    assert review_next(reviewer=rev, after=u2.pk) == s1
    assert review_next(reviewer=rev, after=s2.pk) == rest
    assert review_next(reviewer=rev, after=rest.pk) == u1
    assert review_next(reviewer=rev, after=10**15) == u1  # gone: the first again
    assert review_next(reviewer=rev, at=s2.pk) == s2


def test_a_reviewer_never_sees_a_reading_twice_and_the_second_share_is_offered(
    queue, a_b_c, settings
):
    a, b, c = a_b_c
    for reading in queue:
        reading_review(reading=reading, label="happy", reviewer=a)
    settings.REVIEW_SECOND_SHARE = 0.0
    assert ids(review_queue(reviewer=a)) == [] and ids(review_queue(reviewer=b)) == []
    settings.REVIEW_SECOND_SHARE = 1.0
    assert ids(review_queue(reviewer=a)) == []
    second = review_queue(reviewer=b)
    assert ids(second) == ids(queue) and {r.n_reviews for r in second} == {1}
    reading_review(reading=queue[0], label="happy", reviewer=b)  # agrees: done
    reading_review(reading=queue[1], label="sad", reviewer=b)  # disagrees: a tie-break
    assert ids(review_queue(reviewer=b)) == [queue[2].pk]
    third = review_queue(reviewer=c)
    assert ids(third) == [queue[1].pk, queue[2].pk] and third[0].n_reviews == 2
    reading_review(reading=queue[1], label="sad", reviewer=c)
    assert ids(review_queue(reviewer=reviewer("dan"))) == [queue[2].pk]  # three: closed


def test_a_label_set_before_reviews_were_recorded_counts_as_reviewed(queue, rev, all_second):
    """A reviewed_label with no LabelReview row (set in the admin before this queue) is not
    offered again, where a new review would replace it."""
    Reading.objects.filter(pk=queue[0].pk).update(reviewed_label="sad", reviewed_by=rev)
    assert ids(review_queue(reviewer=reviewer("new"))) == ids(queue[1:])
    page = signed_in(rev).get("/review/").content.decode()
    assert "2 waiting for you · 1 of 3 reviewed" in page


def test_the_second_review_share_is_the_readings_the_id_hash_picks(classroom, rev, settings):
    """The database picks the same readings as ``second_review_bucket``, for small ids and
    ones near the top of a bigint."""
    settings.REVIEW_SECOND_SHARE = 0.2
    start = [1_000, 5_000_003, 2**40, 2**62]
    rows = [
        ReadingFactory.build(
            id=s + k, session=classroom.session, sequence=n * 100 + k, face_crop=png()
        )
        for n, s in enumerate(start)
        for k in range(40)
    ]
    Reading.objects.bulk_create(rows)
    first = reviewer("first")
    LabelReview.objects.bulk_create(
        [LabelReview(reading=r, reviewer=first, label="happy") for r in rows]
    )
    Reading.objects.update(reviewed_label="happy")
    offered = set(ids(review_queue(reviewer=rev)))
    expected = {r.pk for r in rows if second_review_bucket(r.pk) < 200}
    assert offered == expected and 0 < len(offered) < len(rows)


# -- agreement ------------------------------------------------------------------------------


def test_kappa_needs_enough_doubly_reviewed_readings(classroom, a_b_c):
    a, b, c = a_b_c
    readings = [crop(classroom, k, SAMPLE if k % 2 else UNCERTAIN) for k in range(KAPPA_MIN_PAIRS)]
    for k, reading in enumerate(readings):
        reading_review(reading=reading, label="happy" if k < 10 else "sad", reviewer=a)
        if k < KAPPA_MIN_PAIRS - 1:
            reading_review(reading=reading, label="happy" if k < 12 else "sad", reviewer=b)
    few = review_agreement()
    assert few["kappa"] is None and few["pairs"] == KAPPA_MIN_PAIRS - 1
    assert (
        few["kappa_note"]
        == f"needs at least {KAPPA_MIN_PAIRS} doubly reviewed readings (19 so far)"
    )
    reading_review(reading=readings[-1], label="sad", reviewer=b)
    # a third review and a late correction by the first reviewer keep the pairing: the two
    # earliest reviews, first reviewer first
    reading_review(reading=readings[0], label="fear", reviewer=c)
    stats = review_agreement()
    # 20 pairs: a says happy 10, sad 10; b says happy 12, sad 8; agree on 18
    p_e = (10 * 12 + 10 * 8) / 400
    assert stats["pairs"] == 20 and stats["agreement"] == pytest.approx(0.9)
    assert stats["kappa"] == pytest.approx((0.9 - p_e) / (1 - p_e)) and stats["kappa_note"] == ""


def test_the_model_is_measured_against_reviewed_labels_by_queue_reason(classroom, rev):
    # the model says neutral everywhere; the reviewer agrees on 1 of 4 uncertain, 3 of 4 sampled
    for k in range(8):
        reading = crop(classroom, k, UNCERTAIN if k < 4 else SAMPLE)
        agrees = k == 0 or k >= 5
        reading_review(reading=reading, label="neutral" if agrees else "happy", reviewer=rev)
    rows = {r["reason"]: r for r in review_agreement()["model"]}
    assert [r["reason"] for r in review_agreement()["model"]] == ["uncertain", "sample", "none"]
    assert (rows["uncertain"]["n"], rows["uncertain"]["accuracy"]) == (4, 0.25)
    assert (rows["sample"]["n"], rows["sample"]["accuracy"]) == (4, 0.75)
    assert (rows["none"]["n"], rows["none"]["accuracy"]) == (0, None)


# -- the page -------------------------------------------------------------------------------


def test_the_page_shows_one_reading_with_the_models_guess_and_the_progress(queue, rev, no_second):
    r = signed_in(rev).get("/review/")
    assert r.status_code == 200 and r.context["reading"] == queue[0]
    page = r.content.decode()
    assert "3 waiting for you · 0 of 3 reviewed" in page and 'src="data:image/png;base64,' in page
    assert 'Model: <strong id="model-label">neutral</strong>' in page and "First review" in page
    assert page.count('name="label"') == 7 and "<script>" not in page
    assert 'id="kappa">— <span class="small">needs at least 20' in page


def test_the_sample_and_second_reviews_are_judged_blind(classroom, a_b_c, all_second):
    a, b, _ = a_b_c
    sampled = crop(classroom, 0, SAMPLE, label="fear")
    page = signed_in(a).get("/review/").content.decode()
    assert "Judged blind: the model's guess is hidden" in page
    assert 'id="model-label"' not in page and "model-guess" not in page
    signed_in(a).post(f"/review/{sampled.pk}/", {"label": "surprise"})
    r = signed_in(b).get("/review/")
    page = r.content.decode()
    assert r.context["reading"] == sampled and "Second review" in page
    assert "the model's guess and the other reviews are hidden" in page
    assert "ann" not in page and 'id="model-label"' not in page and "model-guess" not in page


def test_a_label_is_recorded_and_the_next_reading_follows(queue, rev):
    c = signed_in(rev)
    r = c.post(f"/review/{queue[0].pk}/", {"label": "happy"})
    assert r.status_code == 302 and r["Location"] == f"/review/?after={queue[0].pk}"
    first = Reading.objects.get(pk=queue[0].pk)
    assert (first.reviewed_label, first.reviewed_by) == ("happy", rev) and first.reviewed_at
    r = c.get(r["Location"])
    assert r.context["reading"] == queue[1] and "1 of 3 reviewed" in r.content.decode()


def test_a_refused_label_shows_the_same_reading_again(queue, rev):
    c = signed_in(rev)
    r = c.post(f"/review/{queue[1].pk}/", {"label": "bored"})
    assert r["Location"] == f"/review/?at={queue[1].pk}"
    r = c.get(r["Location"])
    assert r.context["reading"] == queue[1] and "unknown expression" in r.content.decode()
    no_crop, no_estimate = Reading.objects.filter(sequence__in=[3, 4]).order_by("sequence")
    for reading in (no_crop, no_estimate):
        assert c.post(f"/review/{reading.pk}/", {"label": "sad"}).status_code == 404


def test_only_reviewers_may_review(queue, classroom, rev):
    assert Client().get("/review/")["Location"].startswith("/accounts/login/")
    for user in (classroom.instructor, classroom.learner):
        c = signed_in(user)
        assert c.get("/review/").status_code == 403
        assert c.post(f"/review/{queue[0].pk}/", {"label": "sad"}).status_code == 403
        assert (
            "Label review"
            not in c.get("/teach/" if user.is_instructor else "/learn/").content.decode()
        )
    staff = InstructorFactory(username="staff_rev", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="change_reading"))
    assert signed_in(staff).get("/review/").status_code == 200
    assert 'href="/review/">Label review' in signed_in(rev).get("/teach/").content.decode()
    assert not LabelReview.objects.exists()
    assert Reading.objects.filter(reviewed_label__isnull=False).count() == 0


def test_the_label_post_needs_the_csrf_token(queue, rev):
    c = Client(enforce_csrf_checks=True)
    c.force_login(rev)
    assert c.post(f"/review/{queue[0].pk}/", {"label": "sad"}).status_code == 403
    assert Reading.objects.get(pk=queue[0].pk).reviewed_label is None


def test_an_empty_queue_says_what_to_do(db, rev):
    page = signed_in(rev).get("/review/").content.decode()
    assert "Nothing to review yet" in page and "Keep face crops" in page


def test_every_label_has_a_number_key_and_letters_only_where_unambiguous():
    keys = dict(shortcuts())
    assert keys["happy"] == ["4", "h"] and keys["neutral"] == ["7", "n"]
    assert keys["sad"] == ["5"] and keys["surprise"] == ["6"]  # both start with s
    flat = [k for ks in keys.values() for k in ks]
    assert len(flat) == len(set(flat)) and "0" not in flat  # 0 skips


def test_a_second_review_share_outside_0_1_stops_the_server():
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "SECRET_KEY": "x"}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", REVIEW_SECOND_SHARE="1.5")
    probe = "import django; django.setup()"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "REVIEW_SECOND_SHARE must be between 0 and 1, not 1.5" in out.stderr
