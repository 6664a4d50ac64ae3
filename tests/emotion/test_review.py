"""The label review page (/review/): one reading with a face crop at a time, for reviewers;
a label is recorded through ``reading_review`` and the next reading follows."""

import cv2
import numpy as np
import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.test import Client

from emotion.models import Reading
from emotion.services import reading_review
from emotion.views import shortcuts
from tests.factories import AdminFactory, InstructorFactory, ReadingFactory


def png() -> bytes:
    return cv2.imencode(".png", np.full((48, 48), 128, np.uint8))[1].tobytes()


@pytest.fixture
def reviewer(db):
    return AdminFactory(username="rev", is_staff=False, is_superuser=False)


@pytest.fixture
def queue(classroom):
    """Three readings with a crop and an estimate, one without a crop, one without an
    estimate (engagement only)."""
    with_crop = [
        ReadingFactory(session=classroom.session, sequence=i, face_crop=png()) for i in range(3)
    ]
    ReadingFactory(session=classroom.session, sequence=3)
    ReadingFactory(session=classroom.session, sequence=4, face_crop=png(), probs=None)
    return with_crop


def signed_in(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


def test_the_page_shows_one_reading_with_a_crop_and_the_progress(queue, reviewer):
    r = signed_in(reviewer).get("/review/")
    assert r.status_code == 200 and r.context["reading"] == queue[0]
    page = r.content.decode()
    assert "0 of 3 reviewed" in page and 'src="data:image/png;base64,' in page
    assert 'Model: <strong id="model-label">neutral</strong>' in page
    assert page.count('name="label"') == 7 and "<script>" not in page


def test_a_label_is_recorded_and_the_next_reading_follows(queue, reviewer):
    c = signed_in(reviewer)
    r = c.post(f"/review/{queue[0].pk}/", {"label": "happy"})
    assert r.status_code == 302 and r["Location"] == f"/review/?after={queue[0].pk}"
    first = Reading.objects.get(pk=queue[0].pk)
    assert (first.reviewed_label, first.reviewed_by) == ("happy", reviewer) and first.reviewed_at
    r = c.get(r["Location"])
    assert r.context["reading"] == queue[1] and "1 of 3 reviewed" in r.content.decode()


def test_skipping_moves_on_and_comes_back_round(queue, reviewer):
    c = signed_in(reviewer)
    assert c.get(f"/review/?after={queue[2].pk}").context["reading"] == queue[0]
    assert c.get(f"/review/?after={queue[0].pk}").context["reading"] == queue[1]
    assert c.get("/review/?after=99999999999999999999999").context["reading"] == queue[0]


def test_a_reading_without_crop_or_estimate_cannot_be_labelled_here(queue, classroom, reviewer):
    c = signed_in(reviewer)
    no_crop, no_estimate = Reading.objects.filter(sequence__in=[3, 4]).order_by("sequence")
    for reading in (no_crop, no_estimate):
        assert c.post(f"/review/{reading.pk}/", {"label": "sad"}).status_code == 404
    with pytest.raises(ValidationError, match="did not agree"):
        reading_review(reading=no_estimate, label="sad", reviewer=reviewer)
    with pytest.raises(ValidationError, match="unknown expression"):
        reading_review(reading=queue[0], label="bored", reviewer=reviewer)
    r = c.post(f"/review/{queue[0].pk}/", {"label": "bored"}, follow=True)
    assert r.context["reading"] == queue[0] and "unknown expression" in r.content.decode()


def test_only_reviewers_may_review(queue, classroom, reviewer):
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
    assert 'href="/review/">Label review' in signed_in(reviewer).get("/teach/").content.decode()
    assert Reading.objects.filter(reviewed_label__isnull=False).count() == 0


def test_the_label_post_needs_the_csrf_token(queue, reviewer):
    c = Client(enforce_csrf_checks=True)
    c.force_login(reviewer)
    assert c.post(f"/review/{queue[0].pk}/", {"label": "sad"}).status_code == 403
    assert Reading.objects.get(pk=queue[0].pk).reviewed_label is None


def test_an_empty_queue_says_what_to_do(db, reviewer):
    page = signed_in(reviewer).get("/review/").content.decode()
    assert "Nothing to review yet" in page and "Keep face crops" in page


def test_every_label_has_a_number_key_and_letters_only_where_unambiguous():
    keys = dict(shortcuts())
    assert keys["happy"] == ["4", "h"] and keys["neutral"] == ["7", "n"]
    assert keys["sad"] == ["5"] and keys["surprise"] == ["6"]  # both start with s
    flat = [k for ks in keys.values() for k in ks]
    assert len(flat) == len(set(flat)) and "0" not in flat  # 0 skips
