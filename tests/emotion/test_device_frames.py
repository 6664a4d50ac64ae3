"""Device frames (issue 22): a 48×48 crop and cues, or cues alone, found on the learner's
device; validated, stored with ``face_source="device"``, over the stream socket and REST."""

import base64
import json

import numpy as np
import pytest
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from emotion.framestore import get_frame_store
from emotion.models import Reading
from emotion.services import IncomingFrame, frames_accept
from emotion.validation import CROP_BYTES, FrameRejection, check_crop, check_cues
from tests.emotion.stream_client import StreamClient, connect, drain
from tests.factories import CourseFactory, LearnerSessionFactory, UserFactory, enroll

CUES = {
    "face": True,
    "box": [0.3, 0.2, 0.35, 0.45],
    "yaw": 5.0,
    "pitch": -3.5,
    "roll": 1.0,
    "eye_open_left": 0.3,
    "eye_open_right": 0.28,
    "gaze_yaw": -2.0,
    "gaze_pitch": 1.0,
    "center_offset": 0.03,
    "area_fraction": 0.16,
}
CROP = bytes(range(256)) * 9  # 2304 bytes, a gradient


def cues(**changes) -> dict:
    out = {**CUES, **changes}
    return {k: v for k, v in out.items() if v is not ...}


# --- validation -------------------------------------------------------------------------------


def test_valid_cues_come_back_as_floats():
    got = check_cues(cues(yaw=5, gaze_yaw=None, gaze_pitch=...))
    assert got["yaw"] == 5.0 and isinstance(got["yaw"], float)
    assert "gaze_yaw" not in got and "gaze_pitch" not in got  # optional: the iris gave none
    assert got["box"] == [0.3, 0.2, 0.35, 0.45] and got["face"] is True
    assert check_cues({"face": False}) == {"face": False}
    assert check_cues({"face": False, "box": None, "yaw": None}) == {"face": False}


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        ("not an object", "cues must be a JSON object"),
        ([1, 2], "cues must be a JSON object"),
        (cues(smile=0.5), "cues.smile is not a cue"),
        (cues(face="yes"), "cues.face must be true or false"),
        (cues(face=...), "cues.face must be true or false"),
        ({"face": False, "yaw": 3}, "cues.yaw must be null or absent when cues.face is false"),
        (cues(box=...), "cues.box must be [x, y, w, h]"),
        (cues(box=[0.1, 0.2, 0.3]), "cues.box must be [x, y, w, h]"),
        (cues(box=[0.1, 0.2, 0.3, 1.2]), "cues.box must be [x, y, w, h]"),
        (cues(box=[-0.1, 0.2, 0.3, 0.2]), "cues.box must be [x, y, w, h]"),
        (cues(box=[0.8, 0.2, 0.3, 0.2]), "cues.box must lie in the picture"),
        (cues(box=[0.1, 0.9, 0.3, 0.2]), "cues.box must lie in the picture"),
        (cues(yaw=120), "cues.yaw must be a number in [-90, 90], got 120"),
        (cues(yaw=-90.5), "cues.yaw must be a number in [-90, 90], got -90.5"),
        (cues(yaw=...), "cues.yaw must be a number in [-90, 90], got null"),
        (cues(yaw="5"), "cues.yaw must be a number in [-90, 90], got '5'"),
        (cues(yaw=True), "cues.yaw must be a number in [-90, 90], got true"),
        (cues(pitch=91), "cues.pitch must be a number in [-90, 90], got 91"),
        (cues(roll=181), "cues.roll must be a number in [-180, 180], got 181"),
        (cues(eye_open_left=1.5), "cues.eye_open_left must be a number in [0, 1], got 1.5"),
        (cues(eye_open_right=-0.1), "cues.eye_open_right must be a number in [0, 1]"),
        (cues(gaze_yaw=100), "cues.gaze_yaw must be a number in [-90, 90], got 100"),
        (cues(gaze_pitch=-95), "cues.gaze_pitch must be a number in [-90, 90], got -95"),
        (cues(center_offset=-0.1), "cues.center_offset must be a number ≥ 0, got -0.1"),
        (cues(area_fraction=1.1), "cues.area_fraction must be a number in [0, 1], got 1.1"),
        (cues(area_fraction=...), "cues.area_fraction must be a number in [0, 1], got null"),
    ],
)
def test_every_cue_violation_names_the_key_and_range(sent, reason):
    with pytest.raises(FrameRejection) as e:
        check_cues(sent)
    assert e.value.code == "bad_cues" and e.value.http_status == 400
    assert reason in e.value.reason, e.value.reason


def test_non_finite_numbers_are_refused():
    with pytest.raises(FrameRejection, match="cues.yaw"):
        check_cues(cues(yaw=float("nan")))
    with pytest.raises(FrameRejection, match="cues.center_offset"):
        check_cues(cues(center_offset=float("inf")))


@pytest.mark.parametrize("n", [0, 2303, 2305, 48 * 48 * 3])
def test_a_crop_must_be_2304_bytes(n):
    with pytest.raises(FrameRejection) as e:
        check_crop(b"\0" * n)
    assert e.value.code == "bad_crop"
    assert e.value.reason == f"crop must be 2304 bytes (48×48 grayscale), got {n}"
    check_crop(CROP)


# --- the service ------------------------------------------------------------------------------


def accept(session, *frames, **kw):
    return frames_accept(session=session, frames=list(frames), enqueue=False, **kw)


@pytest.mark.django_db
def test_a_cues_frame_is_analysed_at_accept_time(classroom):
    result = accept(classroom.session, IncomingFrame(data=b"", kind="cues", cues=cues()))
    assert result.rejected == [] and [a["queued"] for a in result.accepted] == [False]
    r = Reading.objects.get(session=classroom.session)
    assert r.face_source == "device" and r.analysed_at is not None and r.error == ""
    assert r.face_found and r.attentive and r.box == CUES["box"]
    assert r.cues == {k: float(v) if k not in ("face", "box") else v for k, v in CUES.items()}
    assert r.label is None and r.model_version is None  # no model ran
    assert get_frame_store().keys() == []  # no bytes held

    accept(classroom.session, IncomingFrame(data=b"", kind="cues", cues={"face": False}))
    absent = Reading.objects.get(session=classroom.session, sequence=1)
    assert not absent.face_found and not absent.attentive and absent.box is None


@pytest.mark.django_db
def test_an_off_centre_face_is_not_attentive_by_todays_rule(classroom):
    accept(
        classroom.session,
        IncomingFrame(
            data=b"", kind="cues", cues=cues(box=[0.0, 0.0, 0.2, 0.2], center_offset=0.5)
        ),
    )
    assert Reading.objects.get(session=classroom.session).attentive is False


@pytest.mark.django_db
def test_a_crop_frame_is_held_and_queued_like_a_picture(classroom):
    result = accept(classroom.session, IncomingFrame(data=CROP, kind="crop", cues=cues()))
    assert [a["queued"] for a in result.accepted] == [True]
    r = Reading.objects.get(session=classroom.session)
    assert r.face_source == "device" and r.analysed_at is None and r.cues["yaw"] == 5.0
    assert r.box == CUES["box"]
    assert get_frame_store().get_many([r.pk]) == {r.pk: CROP}


@pytest.mark.django_db
def test_a_crop_without_a_face_is_refused(classroom):
    result = accept(classroom.session, IncomingFrame(data=CROP, kind="crop", cues={"face": False}))
    assert result.rejected[0]["code"] == "bad_cues"
    assert "cues.face true" in result.rejected[0]["reason"]


@pytest.mark.django_db
def test_nothing_accepted_is_lost_when_one_frame_is_bad(classroom, face_frames):
    result = accept(
        classroom.session,
        IncomingFrame(data=b"", sequence=0, kind="cues", cues=cues()),
        IncomingFrame(data=b"", sequence=1, kind="cues", cues=cues(yaw=200)),
        IncomingFrame(data=CROP[:100], sequence=2, kind="crop", cues=cues()),
        IncomingFrame(data=CROP, sequence=3, kind="crop", cues=cues()),
        IncomingFrame(data=face_frames[0], sequence=4),
    )
    assert [a["sequence"] for a in result.accepted] == [0, 3, 4]
    assert [(r["sequence"], r["code"]) for r in result.rejected] == [
        (1, "bad_cues"),
        (2, "bad_crop"),
    ]
    got = dict(
        Reading.objects.filter(session=classroom.session).values_list("sequence", "face_source")
    )
    assert got == {0: "device", 3: "device", 4: "server"}


@pytest.mark.django_db
def test_duplicates_of_device_frames_are_reported_not_stored_twice(classroom):
    frame = IncomingFrame(data=b"", sequence=7, kind="cues", cues=cues())
    accept(classroom.session, frame)
    again = accept(
        classroom.session, frame, IncomingFrame(data=CROP, sequence=7, kind="crop", cues=cues())
    )
    assert again.accepted == [] and again.duplicates == [7, 7]
    assert Reading.objects.filter(session=classroom.session).count() == 1


@pytest.mark.django_db
def test_a_course_without_full_pictures_refuses_pictures_only(classroom, face_frames):
    classroom.course.allow_full_pictures = False
    classroom.course.save()  # the session's own copy of the course is older: not trusted
    result = accept(
        classroom.session,
        IncomingFrame(data=face_frames[0], sequence=0),
        IncomingFrame(data=CROP, sequence=1, kind="crop", cues=cues()),
    )
    assert [(r["sequence"], r["code"]) for r in result.rejected] == [(0, "pictures_not_allowed")]
    assert [a["sequence"] for a in result.accepted] == [1]


@pytest.mark.django_db
@pytest.mark.parametrize("why", ["engagement-only course", "no emotion consent"])
def test_no_crop_where_emotion_is_off(why):
    course = CourseFactory(emotion_inference_enabled=why != "engagement-only course")
    learner = UserFactory()
    enroll(course, learner, emotion=False)
    session = LearnerSessionFactory(learner=learner, course=course, consent=learner.consents.get())
    assert session.emotion_enabled is False
    result = accept(
        session,
        IncomingFrame(data=CROP, sequence=0, kind="crop", cues=cues()),
        IncomingFrame(data=b"", sequence=1, kind="cues", cues=cues()),
    )
    assert [(r["sequence"], r["code"]) for r in result.rejected] == [(0, "crop_not_allowed")]
    assert "cues alone" in result.rejected[0]["reason"]
    assert [a["sequence"] for a in result.accepted] == [1]


# --- the stream socket ------------------------------------------------------------------------


def device_message(sequence, kind, data=b"", **header) -> bytes:
    h = json.dumps({"sequence": sequence, "kind": kind, **header}).encode()
    return len(h).to_bytes(4, "big") + h + data


async def next_ack(client: StreamClient) -> dict:
    n = len(client.acks)
    while len(client.acks) == n:
        assert await client.pump(timeout=10), "no ack"
    return client.acks[-1]


@database_sync_to_async
def readings_of(session) -> dict:
    return {r.sequence: r for r in Reading.objects.filter(session=session).order_by("sequence")}


@pytest.mark.django_db(transaction=True)
async def test_socket_takes_crop_and_cues_frames(classroom):
    comm, ok, _ = await connect(f"/ws/sessions/{classroom.session.pk}/stream/", classroom.learner)
    assert ok
    client = StreamClient(comm)
    ready = await client.ready()
    assert ready["device"] == {
        "allow_full_pictures": True,
        "min_capture_fps": 0.2,
        "capture_fps": classroom.course.capture_fps,
        "attention_cone_degrees": 25.0,
        "send_crop": True,
    }
    await comm.send_to(bytes_data=device_message(0, "crop", CROP, cues=cues()))
    assert (await next_ack(client))["status"] == "accepted"
    await comm.send_to(bytes_data=device_message(1, "cues", cues=cues()))
    assert (await next_ack(client))["status"] == "accepted"
    await comm.send_to(
        text_data=json.dumps({"type": "cues", "sequence": 2, "cues": {"face": False}})
    )
    ack = await next_ack(client)
    assert ack == {"type": "ack", "sequence": 2, "status": "accepted", "credit": ack["credit"]}
    # a frame header as text, then the crop as the next binary message (as pictures go)
    await comm.send_to(
        text_data=json.dumps({"type": "frame", "sequence": 3, "kind": "crop", "cues": cues()})
    )
    await comm.send_to(bytes_data=CROP)
    assert (await next_ack(client))["status"] == "accepted"
    await comm.send_to(bytes_data=device_message(1, "cues", cues=cues()))
    assert (await next_ack(client))["status"] == "duplicate"

    rows = await readings_of(classroom.session)
    assert sorted(rows) == [0, 1, 2, 3]
    assert {r.face_source for r in rows.values()} == {"device"}
    assert rows[1].analysed_at is not None and rows[2].face_found is False
    assert rows[0].cues["yaw"] == 5.0 and rows[0].box == CUES["box"]
    # the cues frames' summary reached the learner's socket, as a batch's does
    msgs = await drain(comm, 3)
    summaries = client.summaries + [m for m in msgs if m["type"] == "summary"]
    assert summaries
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_socket_rejects_bad_device_frames_with_reasons(classroom):
    comm, ok, _ = await connect(f"/ws/sessions/{classroom.session.pk}/stream/", classroom.learner)
    assert ok
    client = StreamClient(comm)
    await client.ready()
    cases = [
        (device_message(0, "video"), "bad_header", "kind must be one of picture, crop, cues"),
        (device_message(1, "cues", b"xx", cues=cues()), "bad_header", "no bytes after"),
        (device_message(2, "cues", cues=cues(yaw=120)), "bad_cues", "cues.yaw must be"),
        (device_message(3, "crop", b"\0" * 10, cues=cues()), "bad_crop", "got 10"),
        (device_message(4, "crop", CROP), "bad_cues", "cues must be a JSON object"),
    ]
    for message, code, reason in cases:
        await comm.send_to(bytes_data=message)
        ack = await next_ack(client)
        assert (ack["status"], ack["code"]) == ("rejected", code), ack
        assert reason in ack["reason"], ack
    assert await readings_of(classroom.session) == {}
    await comm.disconnect()


# --- REST -------------------------------------------------------------------------------------


def post_observations(user, session, frames):
    c = APIClient()
    c.force_authenticate(user)
    return c.post(f"/api/sessions/{session.pk}/observations/", {"frames": frames}, format="json")


@pytest.mark.django_db
def test_rest_observations_are_accepted(classroom):
    crop = base64.b64encode(CROP).decode()
    r = post_observations(
        classroom.learner,
        classroom.session,
        [
            {"sequence": 0, "captured_at": None, "cues": cues(), "crop": crop},
            {"sequence": 1, "cues": cues()},
            {"cues": {"face": False}},
        ],
    )
    assert r.status_code == 202, r.content
    assert r.json() == {"accepted": [0, 1, 2], "duplicates": [], "rejected": []}
    rows = Reading.objects.filter(session=classroom.session).order_by("sequence")
    assert [x.face_source for x in rows] == ["device"] * 3
    assert rows[2].face_found is False and rows[1].analysed_at is not None


@pytest.mark.django_db
def test_rest_rejects_each_bad_item_and_keeps_the_others(classroom):
    crop = base64.b64encode(CROP).decode()
    r = post_observations(
        classroom.learner,
        classroom.session,
        [
            {"sequence": 0, "cues": cues()},
            {"sequence": 1, "cues": cues(roll=200)},
            {"sequence": 2, "cues": cues(), "crop": base64.b64encode(b"short").decode()},
            {"sequence": 3, "cues": cues(), "crop": "not base64!"},
            {"sequence": 4, "cues": cues(), "captured_at": "yesterday-ish"},
            {"sequence": 5, "cues": cues(), "captured_at": "2001-01-01T00:00:00Z"},
            {"sequence": 6, "cues": cues(), "crop": crop},
            {"sequence": 0, "cues": cues()},
        ],
    )
    assert r.status_code == 400, r.content
    body = r.json()
    assert body["accepted"] == [0, 6] and body["duplicates"] == [0]
    got = [(x["index"], x["sequence"], x["code"]) for x in body["rejected"]]
    assert got == [
        (1, 1, "bad_cues"),
        (2, 2, "bad_crop"),
        (3, 3, "bad_crop"),
        (4, 4, "bad_timestamp"),
        (5, 5, "bad_timestamp"),
    ]
    assert "cues.roll must be a number in [-180, 180], got 200" in body["rejected"][0]["reason"]
    assert body["error"]["code"] == "frames_rejected"
    assert body["error"]["details"][0]["index"] == 1
    assert Reading.objects.filter(session=classroom.session).count() == 2


@pytest.mark.django_db
def test_rest_observations_request_shape_and_access(classroom, settings):
    bad = post_observations(classroom.learner, classroom.session, [])
    assert bad.status_code == 400
    settings.EMOTION_LIMITS = {**settings.EMOTION_LIMITS, "max_frames_per_request": 2}
    many = post_observations(classroom.learner, classroom.session, [{"cues": cues()}] * 3)
    assert many.status_code == 400 and many.json()["error"]["code"] == "too_many_files"
    other = post_observations(classroom.instructor, classroom.session, [{"cues": cues()}])
    assert other.status_code in (403, 404)
    assert not Reading.objects.filter(session=classroom.session).exists()


@pytest.mark.django_db
def test_rest_observations_obey_the_course_policy(classroom):
    classroom.session.emotion_enabled = False
    classroom.session.save()
    crop = base64.b64encode(CROP).decode()
    r = post_observations(
        classroom.learner, classroom.session, [{"cues": cues(), "crop": crop}, {"cues": cues()}]
    )
    assert r.status_code == 400
    assert [x["code"] for x in r.json()["rejected"]] == ["crop_not_allowed"]
    assert r.json()["accepted"] == [0]  # numbered by the server: the first one kept


def test_crop_bytes_constant():
    assert CROP_BYTES == 2304 == len(CROP)
    assert np.frombuffer(CROP, np.uint8).reshape(48, 48)[0, 1] == 1


# --- the worker -------------------------------------------------------------------------------


@pytest.fixture
def real_crop(face_frames) -> bytes:
    """The crop the server itself cuts from a real face picture: what a device sends."""
    import cv2

    from ml.faces import detect_faces

    img = cv2.imdecode(np.frombuffer(face_frames[3], np.uint8), cv2.IMREAD_COLOR)
    (face,) = detect_faces(img)
    return face.crop.tobytes()


@pytest.fixture
def counted_model(monkeypatch):
    """The real predictor, counting its batches."""
    from emotion.inference import get_predictor

    real, calls = get_predictor(), []

    class Counted:
        sha256 = real.sha256

        def describe(self):
            return real.describe()

        def predict_frames(self, images, classify, timings=None):
            calls.append(len(images))
            return real.predict_frames(images, classify, timings)

    monkeypatch.setattr("emotion.inference.get_predictor", lambda: Counted())
    return real, calls


@pytest.mark.django_db(transaction=True)
def test_a_mixed_batch_classifies_device_crops_without_detection(
    classroom, face_frames, real_crop, counted_model
):
    from emotion.services import readings_analyse
    from ml.classes import EMOTIONS

    real, calls = counted_model
    classroom.course.keep_face_crops = True
    classroom.course.save()
    ids = accept(
        classroom.session,
        IncomingFrame(data=face_frames[0], sequence=0),
        IncomingFrame(data=real_crop, sequence=1, kind="crop", cues=cues()),
    ).reading_ids
    stats = readings_analyse(reading_ids=ids)
    assert stats["analysed"] == 2 and calls == [2]  # one batch, both sources
    picture, device = Reading.objects.filter(pk__in=ids).order_by("sequence")
    assert picture.face_source == "server" and picture.face_found and picture.label
    assert picture.cues["n_faces"] == 1  # the server's own cues
    assert device.face_source == "device" and device.error == "" and device.analysed_at
    direct = real.predict_faces([np.frombuffer(real_crop, np.uint8).reshape(48, 48)])[0]
    assert [device.probs[e] for e in EMOTIONS] == pytest.approx(list(direct), abs=1e-4)
    assert device.label == EMOTIONS[int(direct.argmax())]
    assert device.model_version_id == picture.model_version_id
    # what the device sent is kept as sent: no box or cues from a detector
    assert device.box == CUES["box"] and device.cues["yaw"] == 5.0 and device.face_found
    assert device.attentive
    import cv2

    kept = cv2.imdecode(np.frombuffer(bytes(device.face_crop), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert kept.tobytes() == real_crop  # kept for label review, as the server's crops are
    assert get_frame_store().keys() == []


@pytest.mark.django_db(transaction=True)
def test_a_device_crop_in_an_engagement_only_run_gets_no_emotion(
    classroom, real_crop, counted_model
):
    from emotion.services import readings_analyse

    ids = accept(
        classroom.session, IncomingFrame(data=real_crop, sequence=0, kind="crop", cues=cues())
    ).reading_ids
    classroom.course.emotion_inference_enabled = False  # turned off after the crop was sent
    classroom.course.save()
    readings_analyse(reading_ids=ids)
    r = Reading.objects.get(pk=ids[0])
    assert r.analysed_at and r.error == "" and r.face_found and r.probs is None
    assert r.label is None and r.face_crop is None
