"""Abstention (issue 24): a reading below the uncertainty threshold is stored with its
probabilities, marked uncertain, shown as "uncertain" and left out of the emotion mix; the
review queue takes every uncertain reading with a kept crop and a random sample of the rest."""

import csv
import io
import random

import cv2
import numpy as np
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from emotion.inference import get_predictor
from emotion.live import session_summary
from emotion.models import Reading
from emotion.services import IncomingFrame, frames_accept, readings_analyse
from records.selectors import session_timeline_data
from tests.emotion.test_device_frames import cues

#: a flat grey crop: no expression, a low top probability for the shipped model
FLAT = bytes([128]) * 48 * 48


def analyse(session, *crops) -> list[Reading]:
    ids = frames_accept(
        session=session,
        enqueue=False,
        frames=[
            IncomingFrame(data=c, sequence=i, kind="crop", cues=cues()) for i, c in enumerate(crops)
        ],
    ).reading_ids
    assert readings_analyse(reading_ids=ids)["analysed"] == len(crops)
    return list(Reading.objects.filter(pk__in=ids).order_by("sequence"))


@pytest.fixture
def confident_crop(face_frames) -> bytes:
    """A real face the model is sure of (top probability at least 0.9)."""
    from ml.faces import detect_faces

    predictor = get_predictor()
    for data in face_frames:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        (face,) = detect_faces(img)
        if predictor.predict_faces([face.crop])[0].max() >= 0.9:
            return face.crop.tobytes()
    pytest.fail("no confident face among the test frames")


@pytest.mark.django_db(transaction=True)
def test_a_low_confidence_crop_is_stored_uncertain_and_shown_as_uncertain(classroom):
    default = get_predictor().describe()["uncertainty_threshold"]
    assert 0.3 < default < 0.9  # the shipped checkpoint carries its chosen threshold
    (r,) = analyse(classroom.session, FLAT)
    assert r.confidence < default and r.uncertain
    # the model's answer is kept for review and for measuring the threshold
    assert r.label == max(r.probs, key=r.probs.get) and r.probs

    summary = session_summary(classroom.session, classroom.course, timezone.now())
    assert summary["dominant_emotion"] == "uncertain"
    assert summary["emotion_distribution"] is None  # left out of the mix
    assert summary["uncertain_ratio"] == 1.0 and summary["n_frames"] == 1

    client = APIClient()
    client.force_authenticate(classroom.instructor)
    rows = client.get(f"/api/sessions/{classroom.session.pk}/readings/").json()["results"]
    assert [(x["label"], x["uncertain"], x["shown_label"]) for x in rows] == [
        (r.label, True, "uncertain")
    ]
    (w,) = session_timeline_data(session=classroom.session)["windows"]
    assert w["dominant_emotion"] == "uncertain" and w["uncertain_ratio"] == 1.0
    assert w["emotion_distribution"] is None
    report = client.get(f"/api/sessions/{classroom.session.pk}/report/?format=csv")
    (row,) = csv.DictReader(io.StringIO(report.content.decode()))
    assert row["dominant_emotion"] == "uncertain" and float(row["uncertain_ratio"]) == 1.0
    assert row["emotion_distribution_neutral"] == ""


@pytest.mark.django_db(transaction=True)
def test_a_confident_face_stays_in_the_mix_beside_an_uncertain_one(classroom, confident_crop):
    sure, doubt = analyse(classroom.session, confident_crop, FLAT)
    assert not sure.uncertain and doubt.uncertain
    summary = session_summary(classroom.session, classroom.course, timezone.now())
    assert summary["dominant_emotion"] == sure.label  # half uncertain: the sure one shows
    assert summary["uncertain_ratio"] == 0.5
    # the mix is the confident face's probabilities alone
    assert summary["emotion_distribution"] == pytest.approx(sure.probs, abs=1e-4)


@pytest.mark.django_db(transaction=True)
def test_a_courses_threshold_overrides_the_models(classroom, confident_crop):
    classroom.course.uncertainty_threshold = 1.0  # nothing is sure enough
    classroom.course.save()
    (r,) = analyse(classroom.session, confident_crop)
    assert r.uncertain and r.confidence >= 0.9
    classroom.course.uncertainty_threshold = 0.0  # never abstain
    classroom.course.save()
    r2 = frames_accept(
        session=classroom.session,
        enqueue=False,
        frames=[IncomingFrame(data=FLAT, sequence=5, kind="crop", cues=cues())],
    ).reading_ids
    readings_analyse(reading_ids=r2)
    assert not Reading.objects.get(pk=r2[0]).uncertain


@pytest.mark.parametrize(
    ("keep", "threshold", "rate", "reason"),
    [
        (True, 1.0, 0.0, "uncertain"),  # every uncertain reading with a crop
        (True, 0.0, 1.0, "sample"),  # a confident one drawn at random
        (True, 0.0, 0.0, ""),  # a confident one not drawn
        (False, 1.0, 1.0, ""),  # no crop kept: nothing to review
    ],
    ids=["uncertain", "sample", "none", "no-crop"],
)
@pytest.mark.django_db(transaction=True)
def test_review_reason(classroom, settings, keep, threshold, rate, reason):
    settings.REVIEW_SAMPLE_RATE = rate
    classroom.course.keep_face_crops = keep
    classroom.course.uncertainty_threshold = threshold
    classroom.course.save()
    (r,) = analyse(classroom.session, FLAT)
    assert r.review_reason == reason
    assert r.uncertain is (threshold == 1.0)
    assert bool(r.face_crop) is keep


@pytest.mark.django_db(transaction=True)
def test_the_sample_follows_its_random_source(classroom, settings, monkeypatch):
    settings.REVIEW_SAMPLE_RATE = 0.5
    classroom.course.keep_face_crops = True
    classroom.course.uncertainty_threshold = 0.0
    classroom.course.save()
    monkeypatch.setattr("emotion.services.review_random", random.Random(7))
    readings = analyse(classroom.session, *[FLAT] * 12)
    expected = random.Random(7)
    assert [r.review_reason for r in readings] == [
        "sample" if expected.random() < 0.5 else "" for _ in readings
    ]
    assert {r.review_reason for r in readings} == {"sample", ""}


@pytest.mark.django_db(transaction=True)
def test_engagement_only_readings_are_never_uncertain(classroom, settings, face_frames):
    settings.REVIEW_SAMPLE_RATE = 1.0
    course = classroom.course
    course.keep_face_crops, course.uncertainty_threshold = True, 1.0
    course.emotion_inference_enabled = False
    course.save()
    ids = frames_accept(
        session=classroom.session, enqueue=False, frames=[IncomingFrame(data=face_frames[0])]
    ).reading_ids
    readings_analyse(reading_ids=ids)
    r = Reading.objects.get(pk=ids[0])
    assert r.face_found and r.label is None and r.probs is None
    assert not r.uncertain and r.review_reason == "" and not r.face_crop
