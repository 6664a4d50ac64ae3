"""REST frame upload, in-process inference (embedded wiring) on PostgreSQL."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from emotion.framestore import get_frame_store
from emotion.inference import get_predictor
from emotion.models import Reading


def upload(user, session, files, **fields):
    c = APIClient()
    c.force_authenticate(user)
    data = {"frames": [SimpleUploadedFile(name, content, "image/jpeg") for name, content in files]}
    data.update(fields)
    return c.post(f"/api/sessions/{session.pk}/frames/", data, format="multipart")


@pytest.mark.django_db(transaction=True)
def test_real_faces_get_the_predictors_labels(classroom, face_frames, empty_frame):
    frames = face_frames[:6]
    r = upload(
        classroom.learner,
        classroom.session,
        [(f"f{i}.jpg", d) for i, d in enumerate(frames)] + [("empty.jpg", empty_frame)],
    )
    assert r.status_code == 202, r.content
    assert r.json()["accepted"] == list(range(7)) and r.json()["rejected"] == []
    readings = list(Reading.objects.filter(session=classroom.session).order_by("sequence"))
    assert len(readings) == 7 and all(x.analysed_at for x in readings)
    predictor = get_predictor()
    for reading, data in zip(readings, frames, strict=False):
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        direct = predictor.predict_frame(img)[0]
        assert reading.face_found and reading.label == direct.label
        assert reading.confidence == pytest.approx(direct.confidence, abs=1e-4)
        assert reading.box == list(direct.box) and reading.model_version is not None
        # provenance: which checkpoint, and which of its networks (int8 on a CPU worker)
        assert reading.model_version.checkpoint_sha256 == predictor.sha256
        assert reading.model_version.precision == predictor.precision == "int8"
    assert readings[-1].face_found is False and readings[-1].label is None
    # nothing of the raw frames remains: not in the frame store, not on disk, not in the DB
    assert get_frame_store().keys() == []
    media = Path(settings.MEDIA_ROOT)
    assert not media.exists() or not any(p.is_file() for p in media.rglob("*"))
    assert not Reading.objects.filter(face_crop__isnull=False).exists()
    c = APIClient()
    c.force_authenticate(classroom.instructor)
    first = c.get(f"/api/sessions/{classroom.session.pk}/readings/").json()["results"][0]
    assert first["model_version"] == predictor.sha256[:12] and first["model_precision"] == "int8"


@pytest.mark.django_db(transaction=True)
def test_bad_files_are_rejected_with_reasons_and_good_ones_processed(
    classroom, face_frames, settings
):
    settings.EMOTION_LIMITS = {**settings.EMOTION_LIMITS, "max_frame_bytes": 200_000}
    png = cv2.imencode(".png", np.full((480, 640, 3), 90, np.uint8))[1].tobytes()
    files = [
        ("good.jpg", face_frames[0]),
        ("corrupt.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 500),
        ("huge.jpg", b"\xff\xd8\xff" + b"\x01" * 300_000),
        ("notes.txt", b"hello, I am not an image"),
        ("fake.jpg", b"GIF89a" + b"\x00" * 100),
        ("good.png", png),
    ]
    r = upload(classroom.learner, classroom.session, files)
    assert r.status_code == 400
    body = r.json()
    assert body["accepted"] == [0, 1]
    reasons = {x["file"]: x["code"] for x in body["rejected"]}
    assert reasons == {
        "corrupt.jpg": "undecodable",
        "huge.jpg": "too_large",
        "notes.txt": "unsupported_type",
        "fake.jpg": "unsupported_type",
    }
    assert all(x["reason"] for x in body["rejected"]) and body["error"]["code"] == "frames_rejected"
    assert Reading.objects.filter(session=classroom.session, analysed_at__isnull=False).count() == 2
    # a request made only of too-large files is a 413, only of wrong types a 415
    assert upload(classroom.learner, classroom.session, [files[2]]).status_code == 413
    assert upload(classroom.learner, classroom.session, [files[3], files[4]]).status_code == 415


@pytest.mark.django_db(transaction=True)
def test_request_limits_and_field_errors(classroom, face_frames, settings):
    c = APIClient()
    c.force_authenticate(classroom.learner)
    url = f"/api/sessions/{classroom.session.pk}/frames/"
    r = c.post(url, {}, format="multipart")
    assert r.status_code == 400 and "frames" in r.json()["error"]["message"]
    r = upload(
        classroom.learner, classroom.session, [("a.jpg", face_frames[0])], sequence=["1", "2"]
    )
    assert r.status_code == 400 and "one sequence per file" in r.json()["error"]["message"]
    r = upload(classroom.learner, classroom.session, [("a.jpg", face_frames[0])], sequence=["x"])
    assert r.status_code == 400
    settings.EMOTION_LIMITS = {**settings.EMOTION_LIMITS, "max_request_bytes": 1000}
    r = upload(classroom.learner, classroom.session, [("a.jpg", face_frames[0])])
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert not Reading.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_sequences_timestamps_and_duplicates(classroom, face_frames):
    from django.utils import timezone

    now = timezone.now().isoformat()
    r = upload(
        classroom.learner,
        classroom.session,
        [("a.jpg", face_frames[0]), ("b.jpg", face_frames[1])],
        sequence=["10", "11"],
        captured_at=[now, now],
    )
    assert r.json()["accepted"] == [10, 11]
    again = upload(
        classroom.learner, classroom.session, [("a.jpg", face_frames[0])], sequence=["10"]
    )
    assert again.status_code == 202 and again.json() == {
        "accepted": [],
        "duplicates": [10],
        "rejected": [],
    }
    nxt = upload(classroom.learner, classroom.session, [("c.jpg", face_frames[2])])
    assert nxt.json()["accepted"] == [12]
    old = upload(
        classroom.learner,
        classroom.session,
        [("d.jpg", face_frames[3])],
        captured_at=["2001-01-01T00:00:00Z"],
    )
    assert old.status_code == 400 and old.json()["rejected"][0]["code"] == "bad_timestamp"
    assert Reading.objects.filter(session=classroom.session).count() == 3
    huge = upload(
        classroom.learner, classroom.session, [("e.jpg", face_frames[4])], sequence=[str(2**31)]
    )
    assert huge.status_code == 400 and huge.json()["rejected"][0]["code"] == "bad_sequence"


@pytest.mark.django_db(transaction=True)
def test_who_may_upload(classroom, face_frames, api_client_for):
    files = [("a.jpg", face_frames[0])]
    assert upload(classroom.other_learner, classroom.session, files).status_code == 404
    assert upload(classroom.instructor, classroom.session, files).status_code == 403
    assert upload(classroom.other_instructor, classroom.session, files).status_code == 404
    anon = APIClient().post(f"/api/sessions/{classroom.session.pk}/frames/", {}, format="multipart")
    assert anon.status_code == 401
    learner = api_client_for(classroom.learner)
    assert learner.delete(f"/api/courses/{classroom.course.pk}/consent/").status_code == 200
    r = upload(classroom.learner, classroom.session, files)
    assert r.status_code == 409  # revoking consent ended the session
    assert not Reading.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_consent_revoked_without_ending_session_blocks_ingestion(classroom, face_frames):
    from django.utils import timezone

    consent = classroom.session.consent
    consent.revoked_at = timezone.now()
    consent.save()
    r = upload(classroom.learner, classroom.session, [("a.jpg", face_frames[0])])
    assert r.status_code == 403 and "consent" in r.json()["error"]["message"]


@pytest.mark.django_db(transaction=True)
def test_engagement_only_course_stores_no_emotion(classroom, face_frames):
    classroom.course.emotion_inference_enabled = False
    classroom.course.save()
    classroom.session.emotion_enabled = False
    classroom.session.save()
    r = upload(
        classroom.learner,
        classroom.session,
        [(f"{i}.jpg", d) for i, d in enumerate(face_frames[:4])],
    )
    assert r.status_code == 202
    rs = Reading.objects.filter(session=classroom.session)
    assert rs.count() == 4 and all(x.face_found for x in rs)
    assert (
        not rs.filter(probs__isnull=False).exists() and not rs.filter(label__isnull=False).exists()
    )
    c = APIClient()
    c.force_authenticate(classroom.instructor)
    body = c.get(f"/api/sessions/{classroom.session.pk}/readings/").json()
    assert (
        body["count"] == 4
        and "probs" not in body["results"][0]
        and "label" not in body["results"][0]
    )


@pytest.mark.django_db(transaction=True)
def test_keep_face_crops_keeps_only_the_crop(classroom, face_frames):
    classroom.course.keep_face_crops = True
    classroom.course.save()
    upload(classroom.learner, classroom.session, [("a.jpg", face_frames[0])])
    reading = Reading.objects.get(session=classroom.session)
    crop = cv2.imdecode(np.frombuffer(bytes(reading.face_crop), np.uint8), cv2.IMREAD_UNCHANGED)
    assert crop.shape == (48, 48)
    assert get_frame_store().keys() == []


@pytest.mark.django_db(transaction=True)
def test_no_face_crop_is_kept_for_a_learner_who_declined_expression_estimation(
    classroom, face_frames
):
    """The crops exist for label review of expressions: a learner who agreed to engagement
    only must not have an image of their face kept for staff to read an expression from."""
    from tests.factories import LearnerSessionFactory, UserFactory, enroll

    classroom.course.keep_face_crops = True
    classroom.course.save()
    quiet = UserFactory(username="quiet")
    enroll(classroom.course, quiet, emotion=False)
    session = LearnerSessionFactory(
        learner=quiet, course=classroom.course, consent=quiet.consents.get()
    )
    upload(quiet, session, [("a.jpg", face_frames[0])])
    reading = Reading.objects.get(session=session)
    assert reading.face_found and reading.label is None
    assert reading.face_crop is None
    assert get_frame_store().keys() == []


@pytest.mark.django_db(transaction=True)
def test_readings_api_filters_and_permissions(classroom, face_frames, api_client_for):
    upload(
        classroom.learner,
        classroom.session,
        [(f"{i}.jpg", d) for i, d in enumerate(face_frames[:3])],
    )
    url = f"/api/sessions/{classroom.session.pk}/readings/"
    body = api_client_for(classroom.instructor).get(url).json()
    assert body["count"] == 3 and body["results"][0]["label"] is not None
    assert api_client_for(classroom.learner).get(url).status_code == 200
    assert api_client_for(classroom.other_learner).get(url).status_code == 404
    assert api_client_for(classroom.other_instructor).get(url).status_code == 404
    assert api_client_for(classroom.instructor).get(f"{url}?from=2999-01-01").json()["count"] == 0


@pytest.mark.django_db(transaction=True)
def test_decompression_bomb_is_refused_from_its_header(classroom, face_frames, monkeypatch):
    """A ~62 KB PNG declaring 8000×8000 px (64 MB once inflated) is rejected on its declared
    size: OpenCV never sees it, while the good frame beside it is decoded and analysed."""
    from tests.emotion.test_validation import zero_png

    bomb = zero_png(8000, 8000)
    assert len(bomb) < settings.EMOTION_LIMITS["max_frame_bytes"]
    decoded = []
    real_imdecode = cv2.imdecode

    def spy(buf, flags):
        decoded.append(bytes(buf))
        return real_imdecode(buf, flags)

    monkeypatch.setattr(cv2, "imdecode", spy)
    r = upload(classroom.learner, classroom.session, [("a.jpg", face_frames[0]), ("b.png", bomb)])
    assert r.status_code == 400
    body = r.json()
    assert body["accepted"] == [0]
    side = settings.EMOTION_LIMITS["max_side"]
    assert body["rejected"] == [
        {
            "file": "b.png",
            "sequence": None,
            "code": "too_many_pixels",
            "reason": f"8000×8000 px exceeds the limit of {side} px a side",
        }
    ]
    assert bomb not in decoded and face_frames[0] in decoded
    assert Reading.objects.get(session=classroom.session).analysed_at is not None


def multipart_files(n: int) -> list[tuple[str, bytes]]:
    return [(f"{i}.jpg", b"\xff\xd8\xff") for i in range(n)]


@pytest.mark.django_db(transaction=True)
def test_too_many_files_is_a_json_400_with_the_limit(classroom, settings):
    """Past DATA_UPLOAD_MAX_NUMBER_FILES Django's parser raises TooManyFilesSent, which DRF's
    parser lets through: it was Django's HTML 400 page, it is the API's JSON error."""
    per_request = settings.EMOTION_LIMITS["max_frames_per_request"]
    files = multipart_files(settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1)
    too_many = {
        "status": 400,
        "code": "too_many_files",
        "message": f"too many files: at most {per_request} per request",
        "details": None,
    }
    r = upload(classroom.learner, classroom.session, files)
    assert r.status_code == 400 and r["Content-Type"] == "application/json"
    assert r.json()["error"] == too_many
    # the same through session authentication, whose CSRF check reads the form first
    from django.middleware.csrf import _get_new_csrf_string

    c = APIClient(enforce_csrf_checks=True)
    c.force_login(classroom.learner)
    token = _get_new_csrf_string()
    c.cookies[settings.CSRF_COOKIE_NAME] = token
    data = {"frames": [SimpleUploadedFile(n, d, "image/jpeg") for n, d in files]}
    url = f"/api/sessions/{classroom.session.pk}/frames/"
    r = c.post(url, data, format="multipart", HTTP_X_CSRFTOKEN=token)
    assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_files"
    # below Django's cap but above the endpoint's: the view's own check gives the same error
    for n in (per_request + 1, settings.DATA_UPLOAD_MAX_NUMBER_FILES):
        r = upload(classroom.learner, classroom.session, multipart_files(n))
        assert r.status_code == 400 and r["Content-Type"] == "application/json"
        assert r.json()["error"] == too_many
    # the limit itself is allowed (these stub files are then rejected one by one)
    r = upload(classroom.learner, classroom.session, multipart_files(per_request))
    assert (
        r.json()["error"]["code"] == "frames_rejected" and len(r.json()["rejected"]) == per_request
    )
    assert not Reading.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_too_many_fields_or_too_much_field_data_is_a_json_error(classroom, settings):
    n = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    r = upload(classroom.learner, classroom.session, multipart_files(1), sequence=["1"] * (n + 5))
    assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_fields"
    assert r.json()["error"]["message"] == f"too many form fields: at most {n} per request"
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    r = upload(classroom.learner, classroom.session, multipart_files(1), captured_at=["x" * 2000])
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert "1000 bytes" in r.json()["error"]["message"]
    assert not Reading.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_session_with_too_many_frames_waiting_is_refused_whole_and_keeps_what_it_had(
    classroom, face_frames, settings, monkeypatch
):
    """Backpressure: one learner cannot fill the frame store and the inference queue. A
    request that would leave more than max_pending_per_session frames waiting gets 429 with
    Retry-After and accepts none of its frames; what was accepted before is untouched, and a
    retry of an accepted request still answers with its duplicates."""
    from emotion.services import readings_analyse

    settings.EMOTION_LIMITS = {**settings.EMOTION_LIMITS, "max_pending_per_session": 5}
    monkeypatch.setattr("emotion.services.readings_enqueue", lambda reading_ids: None)
    first = [(f"{i}.jpg", face_frames[i]) for i in range(3)]
    r = upload(classroom.learner, classroom.session, first, sequence=[0, 1, 2])
    assert r.status_code == 202
    second = [(f"{i}.jpg", face_frames[i]) for i in range(3, 6)]
    r = upload(classroom.learner, classroom.session, second, sequence=[3, 4, 5])
    assert r.status_code == 429 and r["Retry-After"] == "2"
    assert r.json()["error"]["code"] == "too_many_pending"
    assert "3 frame(s) of this session are still waiting" in r.json()["error"]["message"]
    pending = Reading.objects.filter(session=classroom.session)
    assert sorted(pending.values_list("sequence", flat=True)) == [0, 1, 2]
    assert len(get_frame_store().keys()) == 3
    r = upload(classroom.learner, classroom.session, first, sequence=[0, 1, 2])  # a retry
    assert r.status_code == 202 and r.json()["duplicates"] == [0, 1, 2]

    readings_analyse(reading_ids=list(pending.values_list("pk", flat=True)))
    r = upload(classroom.learner, classroom.session, second, sequence=[3, 4, 5])
    assert r.status_code == 202 and r.json()["accepted"] == [3, 4, 5]


@pytest.mark.django_db
def test_the_readings_api_says_where_each_face_was_found(classroom):
    from tests.factories import ReadingFactory

    ReadingFactory(session=classroom.session, sequence=1)
    ReadingFactory(session=classroom.session, sequence=2, face_source="device")
    c = APIClient()
    c.force_authenticate(classroom.instructor)
    body = c.get(f"/api/sessions/{classroom.session.pk}/readings/").json()
    assert [r["face_source"] for r in body["results"]] == ["server", "device"]
