"""Reviews and crops leave with their readings: erasure, the admin's deletes and retention
delete a learner's readings, and with them their face crops and every review of them, so no
future training set (the fine-tune's query) can hold them. The learner's export says what a
face was labelled, never who labelled it."""

import json
from datetime import timedelta

import cv2
import numpy as np
import pytest
from django.utils import timezone

from emotion.models import LabelReview, Reading
from emotion.services import reading_review
from records.services import learner_data_erase, retention_purge_expired, user_delete
from tests.factories import AdminFactory, ReadingFactory

PNG = cv2.imencode(".png", np.full((48, 48), 77, np.uint8))[1].tobytes()


def training_set() -> set[int]:
    """The readings a fine-tune trains on (the shared decision's query)."""
    rows = Reading.objects.filter(reviewed_label__isnull=False, face_crop__isnull=False)
    return set(rows.exclude(face_crop=b"").values_list("pk", flat=True))


@pytest.fixture
def reviewed(world):
    """learner_a's and learner_b's kept crops, each reviewed twice ("happy", agreed)."""
    world.course.keep_face_crops = True
    world.course.save()
    a, b = AdminFactory(username="rev_ann"), AdminFactory(username="rev_bob")
    made = {}
    for who, session in (("a", world.session_a), ("b", world.session_b)):
        made[who] = []
        for k in range(3):
            reading = ReadingFactory(session=session, sequence=k, face_crop=PNG)
            reading_review(reading=reading, label="happy", reviewer=a)
            reading_review(reading=reading, label="happy", reviewer=b)
            made[who].append(reading.pk)
    assert training_set() == set(made["a"]) | set(made["b"])
    assert LabelReview.objects.count() == 12
    return made


def gone(pks) -> bool:
    """No reading, no crop and no review of ``pks`` is left, nor in the training set."""
    return (
        not Reading.objects.filter(pk__in=pks).exists()
        and not LabelReview.objects.filter(reading_id__in=pks).exists()
        and not training_set() & set(pks)
    )


def kept(pks) -> bool:
    return (
        LabelReview.objects.filter(reading_id__in=pks).count() == 2 * len(pks)
        and set(pks) <= training_set()
    )


def test_erasure_takes_the_crops_and_their_reviews(reviewed, world):
    learner_data_erase(learner=world.learner_a)
    assert gone(reviewed["a"]) and kept(reviewed["b"])


def test_the_admins_session_and_course_deletes_take_them(reviewed, world, admin_client):
    r = admin_client.post(
        f"/admin/tutoring/learnersession/{world.session_b.pk}/delete/", {"post": "yes"}
    )
    assert r.status_code == 302 and gone(reviewed["b"]) and kept(reviewed["a"])
    r = admin_client.post(f"/admin/tutoring/course/{world.course.pk}/delete/", {"post": "yes"})
    assert r.status_code == 302 and gone(reviewed["a"])


def test_the_admins_delete_of_a_reading_takes_its_reviews(reviewed, admin_client):
    pk = reviewed["a"][0]
    r = admin_client.post(f"/admin/emotion/reading/{pk}/delete/", {"post": "yes"})
    assert r.status_code == 302 and gone([pk]) and kept(reviewed["a"][1:])


def test_retention_takes_them(reviewed, world):
    old = timezone.now() - timedelta(days=world.course.retention_days + 1)
    Reading.objects.filter(pk__in=reviewed["a"]).update(captured_at=old)
    purged = retention_purge_expired()
    assert purged["readings"] == {world.course.pk: 3}
    assert gone(reviewed["a"]) and kept(reviewed["b"])
    # ended sessions past retention go whole, reviews and all
    world.session_b.status, world.session_b.ended_at = "ended", old
    world.session_b.save()
    retention_purge_expired()
    assert gone(reviewed["b"])


def test_a_deleted_reviewers_labels_are_taken_back(reviewed, world):
    """Their reviews go (CASCADE), and each reading's label settles on the reviews left."""
    pk = reviewed["a"][0]
    carl = AdminFactory(username="rev_carl")
    reading_review(reading=Reading.objects.get(pk=pk), label="sad", reviewer=carl)
    ann = LabelReview.objects.filter(reviewer__username="rev_ann").first().reviewer
    reading_review(reading=Reading.objects.get(pk=pk), label="sad", reviewer=ann)
    assert Reading.objects.get(pk=pk).reviewed_label == "sad"  # sad, happy, sad
    user_delete(user=ann)
    assert not LabelReview.objects.filter(reviewer_id=ann.pk).exists()
    reading = Reading.objects.get(pk=pk)
    assert reading.reviewed_label is None  # happy (bob) and sad (carl): no agreed label
    assert Reading.objects.get(pk=reviewed["a"][1]).reviewed_label == "happy"  # bob's alone


def test_the_learners_export_says_the_label_never_who_gave_it(reviewed, world, api):
    r = api(world.learner_a).get("/api/me/export/")
    content = b"".join(r.streaming_content).decode()
    readings = json.loads(content)["readings"]
    assert [x["reviewed_label"] for x in readings] == ["happy"] * 3
    for name in ("rev_ann", "rev_bob", "reviewed_by", "reviewer", "label_review"):
        assert name not in content
