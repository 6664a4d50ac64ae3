"""Label review in the admin: only expressions the learner agreed to have estimated, with a
kept face crop, are offered for, or accept, a human label, recorded as the admin's own review;
nothing the pipeline recorded is editable; the reviews and their agreement are shown."""

import cv2
import numpy as np
import pytest

from emotion.models import LabelReview, Reading
from emotion.services import reading_review
from tests.factories import (
    AdminFactory,
    LearnerSessionFactory,
    ReadingFactory,
    UserFactory,
    enroll,
)

PNG = cv2.imencode(".png", np.full((48, 48), 128, np.uint8))[1].tobytes()


@pytest.fixture
def sessions(classroom):
    """The classroom's emotion session, and an engagement-only learner's session."""
    quiet = UserFactory(username="quiet")
    enroll(classroom.course, quiet, emotion=False)
    engagement_only = LearnerSessionFactory(
        learner=quiet, course=classroom.course, consent=quiet.consents.get()
    )
    assert classroom.session.emotion_enabled and not engagement_only.emotion_enabled
    return classroom.session, engagement_only


def test_review_queue_holds_only_estimated_expressions(sessions, admin_client):
    emotion, engagement_only = sessions
    estimated = ReadingFactory(session=emotion)
    not_estimated = ReadingFactory(session=engagement_only)
    assert estimated.label and not_estimated.label is None and not_estimated.face_found
    r = admin_client.get("/admin/emotion/reading/?review=todo")
    ids = {row.pk for row in r.context["cl"].result_list}
    assert ids == {estimated.pk}


def test_a_reading_without_an_estimated_expression_cannot_be_labelled(sessions, admin_client):
    _, engagement_only = sessions
    reading = ReadingFactory(session=engagement_only)
    r = admin_client.post(
        f"/admin/emotion/reading/{reading.pk}/change/", {"reviewed_label": "happy"}
    )
    assert r.status_code == 200 and "did not agree to having it labelled" in r.content.decode()
    reading.refresh_from_db()
    assert reading.reviewed_label is None and reading.reviewed_by is None


def test_the_changelist_refuses_the_label_too(sessions, admin_client):
    emotion, engagement_only = sessions
    ok, refused = (
        ReadingFactory(session=emotion, face_crop=PNG),
        ReadingFactory(session=engagement_only),
    )
    data = {
        "form-TOTAL_FORMS": "2",
        "form-INITIAL_FORMS": "2",
        "form-0-id": str(ok.pk),
        "form-0-reviewed_label": "sad",
        "form-1-id": str(refused.pk),
        "form-1-reviewed_label": "sad",
        "_save": "Save",
    }
    r = admin_client.post("/admin/emotion/reading/?o=1", data)
    assert r.status_code == 200 and "did not agree to having it labelled" in r.content.decode()
    refused.refresh_from_db()
    assert refused.reviewed_label is None


def test_only_the_reviewed_label_is_editable(sessions, admin_client):
    emotion, _ = sessions
    reading = ReadingFactory(session=emotion, error="", lost_runs=0)
    form = admin_client.get(f"/admin/emotion/reading/{reading.pk}/change/").context["adminform"]
    assert list(form.form.fields) == ["reviewed_label"]


def post_label(client, reading, label):
    """The change form as the page sends it: the label and the read-only inline's forms."""
    data = {"reviewed_label": label}
    reviews = list(LabelReview.objects.filter(reading=reading).order_by("created_at"))
    data["reviews-TOTAL_FORMS"] = data["reviews-INITIAL_FORMS"] = str(len(reviews))
    for k, review in enumerate(reviews):
        data[f"reviews-{k}-id"], data[f"reviews-{k}-reading"] = str(review.pk), str(reading.pk)
    return client.post(f"/admin/emotion/reading/{reading.pk}/change/", data)


def test_an_admins_label_is_their_own_review_and_clearing_takes_it_back(sessions, admin_client):
    emotion, _ = sessions
    disputed, agreed = (ReadingFactory(session=emotion, face_crop=PNG) for _ in range(2))
    other = AdminFactory(username="other_reviewer")
    reading_review(reading=disputed, label="happy", reviewer=other)
    assert post_label(admin_client, disputed, "sad").status_code == 302
    disputed.refresh_from_db()
    assert disputed.reviewed_label is None  # happy and sad: no agreed label
    mine = LabelReview.objects.get(reading=disputed, reviewer__username="admin")
    assert mine.label == "sad" and disputed.reviewed_by == mine.reviewer

    assert post_label(admin_client, agreed, "sad").status_code == 302
    reading_review(reading=agreed, label="sad", reviewer=other)
    assert post_label(admin_client, agreed, "").status_code == 302
    agreed.refresh_from_db()
    assert (agreed.reviewed_label, agreed.reviewed_by) == ("sad", other)
    assert not LabelReview.objects.filter(reading=agreed, reviewer__username="admin").exists()


def test_a_reading_without_a_kept_crop_refuses_the_label(sessions, admin_client):
    emotion, _ = sessions
    reading = ReadingFactory(session=emotion)
    r = admin_client.post(
        f"/admin/emotion/reading/{reading.pk}/change/", {"reviewed_label": "happy"}
    )
    assert r.status_code == 200 and "No face crop was kept" in r.content.decode()
    assert not LabelReview.objects.exists()


def test_the_reviews_are_shown_read_only_on_the_reading(sessions, admin_client):
    emotion, _ = sessions
    reading = ReadingFactory(session=emotion, face_crop=PNG)
    reading_review(reading=reading, label="fear", reviewer=AdminFactory(username="rita"))
    r = admin_client.get(f"/admin/emotion/reading/{reading.pk}/change/")
    (inline,) = r.context["inline_admin_formsets"]
    assert inline.formset.model is LabelReview and not inline.has_change_permission
    page = r.content.decode()
    assert "rita" in page and "fear" in page
    assert 'name="reviews-0-reviewer"' not in page and 'name="reviews-0-label"' not in page


def test_the_changelist_filters_by_queue_reason_and_uncertainty(sessions, admin_client):
    emotion, _ = sessions
    uncertain = ReadingFactory(
        session=emotion, face_crop=PNG, uncertain=True, review_reason="uncertain"
    )
    sample = ReadingFactory(session=emotion, face_crop=PNG, review_reason="sample")
    ReadingFactory(session=emotion)

    def listed(query):
        r = admin_client.get(f"/admin/emotion/reading/?{query}")
        return {row.pk for row in r.context["cl"].result_list}

    assert listed("review_reason__exact=uncertain") == {uncertain.pk}
    assert listed("review_reason__exact=sample") == {sample.pk}
    assert listed("uncertain__exact=1") == {uncertain.pk}


def test_the_changelist_shows_the_reviewers_agreement(sessions, admin_client):
    emotion, _ = sessions
    a, b = AdminFactory(username="ann"), AdminFactory(username="bob")
    for k in range(3):
        reading = ReadingFactory(session=emotion, face_crop=PNG, review_reason="sample")
        reading_review(reading=reading, label="neutral", reviewer=a)
        reading_review(reading=reading, label="neutral" if k else "sad", reviewer=b)
    page = admin_client.get("/admin/emotion/reading/").content.decode()
    assert 'id="review-agreement"' in page and "needs at least 20 doubly reviewed" in page
    assert '<dd id="pair-agreement">67 %' in page  # 2 of 3 pairs agree
    assert '<dd id="model-sample">100 %' in page  # the agreed two: neutral, as the model said
    assert Reading.objects.filter(reviewed_label__isnull=True).count() == 1


def test_every_review_is_listed_read_only(sessions, admin_client):
    emotion, _ = sessions
    reading = ReadingFactory(session=emotion, face_crop=PNG, review_reason="sample")
    reading_review(reading=reading, label="fear", reviewer=AdminFactory(username="rita"))
    r = admin_client.get("/admin/emotion/labelreview/?reading__review_reason=sample")
    listed = [x.reading_id for x in r.context["cl"].result_list]
    assert r.status_code == 200 and listed == [reading.pk]
    one = LabelReview.objects.get()
    page = admin_client.get(f"/admin/emotion/labelreview/{one.pk}/change/").content.decode()
    assert "rita" in page and 'name="label"' not in page


def test_deleting_a_review_in_admin_settles_the_label_on_the_rest(sessions, admin_client):
    emotion, _ = sessions
    reading = ReadingFactory(session=emotion, face_crop=PNG)
    ann, bob = AdminFactory(username="ann"), AdminFactory(username="bob")
    reading_review(reading=reading, label="fear", reviewer=ann)
    reading_review(reading=reading, label="sad", reviewer=bob)
    bobs = LabelReview.objects.get(reviewer=bob)
    r = admin_client.post(f"/admin/emotion/labelreview/{bobs.pk}/delete/", {"post": "yes"})
    assert r.status_code == 302
    reading.refresh_from_db()
    assert (reading.reviewed_label, reading.reviewed_by) == ("fear", ann)
    reading_review(reading=reading, label="sad", reviewer=bob)
    again = LabelReview.objects.get(reviewer=bob).pk
    r = admin_client.post(
        "/admin/emotion/labelreview/",
        {"action": "delete_selected", "_selected_action": [again], "post": "yes"},
    )
    reading.refresh_from_db()
    assert r.status_code == 302 and reading.reviewed_label == "fear"
    assert list(reading.reviews.values_list("reviewer__username", flat=True)) == ["ann"]
