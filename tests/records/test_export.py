"""GET /api/me/export/: everything stored about the caller (GDPR Art. 15/20), streamed."""

import asyncio
import base64
import datetime as dt
import json
import logging
import threading

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from emotion.models import Reading
from records import selectors, services
from records.apis import MeExportApi
from tests.factories import LearnerSessionFactory, ReadingFactory, api_token
from tests.services import require_service
from tutoring.models import LearnerSession

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))  # stands in for a 48×48 crop


def body_of(response) -> bytes:
    assert response.streaming
    return b"".join(response.streaming_content)


def export_of(response) -> dict:
    return json.loads(body_of(response))


def reference_export(learner) -> dict:
    """The document the endpoint returned before it streamed: the old selector's dict, whole
    (DRF rendered it with JSONRenderer)."""
    readings = (
        Reading.objects.filter(session__learner=learner)
        .order_by("session_id", "sequence")
        .values(*selectors.EXPORT_READING_FIELDS)
    )

    def reading(row):
        crop = row.pop("face_crop")
        out = {"session": row.pop("session_id"), **row}
        out["face_crop_kept"] = crop is not None
        out["face_crop_png_base64"] = None if crop is None else base64.b64encode(crop).decode()
        return out

    return {
        "user": {
            "username": learner.username,
            "first_name": learner.first_name,
            "last_name": learner.last_name,
            "email": learner.email,
            "role": learner.role,
            "date_joined": learner.date_joined,
            "last_login": learner.last_login,
        },
        "enrollments": [
            {"course": e.course_id, "title": e.course.title, "since": e.created_at}
            for e in learner.enrollments.select_related("course")
        ],
        "consents": [
            {
                "id": c.pk,
                "course": c.course_id,
                "scopes": c.scopes,
                "policy_version": c.policy_version,
                "granted_at": c.granted_at,
                "revoked_at": c.revoked_at,
            }
            for c in learner.consents.order_by("granted_at")
        ],
        "sessions": [
            {
                "id": s.pk,
                "course": s.course_id,
                "consent": s.consent_id,
                "status": s.status,
                "started_at": s.started_at,
                "ended_at": s.ended_at,
                "end_reason": s.end_reason,
                "last_frame_at": s.last_frame_at,
                "emotion_enabled": s.emotion_enabled,
                "client_info": s.client_info,
            }
            for s in LearnerSession.objects.filter(learner=learner).order_by("started_at")
        ],
        "readings": [reading(r) for r in readings],
    }


def drf_bytes(document: dict) -> bytes:
    return JSONRenderer().render(document)


def history(world) -> None:
    """learner_a: three sessions (one ended, one with an odd client), readings with and without
    kept crops, failed frames and a review; learner_b: a session with readings and a crop."""
    a, now = world.learner_a, timezone.now()
    s1 = world.session_a
    s1.status, s1.ended_at, s1.end_reason = "ended", now, "ended"
    s1.last_frame_at = s1.started_at + dt.timedelta(seconds=4)
    s1.client_info = {"ua": "Firefox ü 名前 \u2028 line separator", "w": 640}
    s1.save()
    consent = a.consents.get()
    s2 = LearnerSessionFactory(
        learner=a, course=world.course, consent=consent, started_at=now - dt.timedelta(hours=2)
    )
    s3 = LearnerSessionFactory(
        learner=a, course=world.course, consent=consent, started_at=now - dt.timedelta(hours=1)
    )
    for s in (s1, s2, s3):
        for i in range(5):
            ReadingFactory(session=s, sequence=i, face_crop=PNG if i % 2 else None)
        ReadingFactory(session=s, sequence=5, face_found=False, error="frame_expired")
        ReadingFactory(session=s, sequence=6, face_found=False, error="undecodable")
    Reading.objects.filter(session=s2, sequence=1).update(
        reviewed_label="happy", reviewed_by=world.admin, reviewed_at=now
    )
    for i in range(3):
        ReadingFactory(session=world.session_b, sequence=i, face_crop=b"B-CROP-%d" % i)


# --- the existing behaviour ---------------------------------------------------------------------


def test_export_has_reviews_crops_errors_and_session_details(world, api):
    s = world.session_a
    s.status, s.ended_at, s.end_reason = "ended", timezone.now(), "ended"
    s.last_frame_at = s.started_at + dt.timedelta(seconds=1)
    s.save()
    kept = ReadingFactory(session=s, sequence=0, face_crop=PNG)
    reviewed_at = timezone.now()
    Reading.objects.filter(pk=kept.pk).update(
        reviewed_label="happy", reviewed_by=world.admin, reviewed_at=reviewed_at
    )
    ReadingFactory(session=s, sequence=1, face_found=False, error="frame_expired")

    r = api(world.learner_a).get("/api/me/export/")
    assert r.status_code == 200
    content = body_of(r)
    body = json.loads(content)
    first, expired = body["readings"]
    assert first["reviewed_label"] == "happy"
    assert dt.datetime.fromisoformat(first["reviewed_at"]) == reviewed_at
    assert first["face_crop_kept"] is True
    assert base64.b64decode(first["face_crop_png_base64"]) == PNG
    assert first["attentive"] is True and first["error"] == ""
    assert first["received_at"] and first["analysed_at"]
    assert expired["error"] == "frame_expired" and expired["face_found"] is False
    assert expired["face_crop_kept"] is False and expired["face_crop_png_base64"] is None
    assert expired["reviewed_label"] is None
    # the reviewer is not the learner's data
    assert "reviewed_by" not in first and world.admin.username not in content.decode()
    (session,) = body["sessions"]
    assert session["end_reason"] == "ended"
    assert dt.datetime.fromisoformat(session["last_frame_at"]) == s.last_frame_at
    assert session["consent"] == s.consent_id
    assert [c["id"] for c in body["consents"]] == [s.consent_id]


def test_export_reads_readings_as_rows_not_model_instances(world, api, monkeypatch):
    """Readings (with their face crops) are read as plain rows, in chunks."""
    for i in range(5):
        ReadingFactory(session=world.session_a, sequence=i, face_crop=PNG if i % 2 else None)

    def no_instances(*args, **kwargs):
        raise AssertionError("the export built Reading instances")

    monkeypatch.setattr(Reading, "from_db", classmethod(no_instances))
    body = export_of(api(world.learner_a).get("/api/me/export/"))
    assert [r["face_crop_kept"] for r in body["readings"]] == [False, True, False, True, False]


# --- streaming ----------------------------------------------------------------------------------


def test_export_is_a_streamed_json_attachment_read_as_it_is_sent(world, api, monkeypatch):
    """The view returns before any reading is read; they are read as the body is consumed."""
    for i in range(4):
        ReadingFactory(session=world.session_a, sequence=i)
    read = []
    original = selectors._export_reading
    monkeypatch.setattr(selectors, "_export_reading", lambda row: read.append(1) or original(row))

    r = api(world.learner_a).get("/api/me/export/")
    assert r.status_code == 200 and r.streaming
    assert r["Content-Type"] == "application/json"
    assert r["Content-Disposition"] == 'attachment; filename="learner_a-data.json"'
    assert read == []
    assert len(export_of(r)["readings"]) == 4 and len(read) == 4


@pytest.mark.postgres
def test_export_is_the_document_the_endpoint_built_whole_before(world, api, monkeypatch):
    """Byte for byte what DRF rendered from the old dict, over PostgreSQL's server-side cursor,
    across several fetches and several pieces of the body."""
    require_service("PostgreSQL", connection.vendor == "postgresql", connection.vendor)
    history(world)
    monkeypatch.setattr(selectors, "EXPORT_CHUNK_SIZE", 4)  # 21 readings: 6 fetches
    monkeypatch.setattr(MeExportApi, "piece_bytes", 1000)

    r = api(world.learner_a).get("/api/me/export/")
    pieces = list(r.streaming_content)
    content = b"".join(pieces)
    expected = reference_export(world.learner_a)
    assert content == drf_bytes(expected)
    assert json.loads(content) == json.loads(drf_bytes(expected))
    assert len(pieces) > 3

    body = json.loads(content)
    assert [s["id"] for s in body["sessions"]] == [
        s.pk for s in world.learner_a.learner_sessions.order_by("started_at")
    ]
    assert len(body["readings"]) == 21
    assert sum(r["face_crop_kept"] for r in body["readings"]) == 6
    assert {r["error"] for r in body["readings"]} == {"", "frame_expired", "undecodable"}
    assert [r["reviewed_label"] for r in body["readings"]].count("happy") == 1
    # dates and text as DRF writes them: UTC as Z, the line separator escaped, UTF-8 kept
    first = world.session_a.readings.order_by("sequence").first()
    rendered_first = next(r for r in body["readings"] if r["session"] == world.session_a.pk)
    assert rendered_first["captured_at"] == first.captured_at.isoformat().replace("+00:00", "Z")
    assert b"\\u2028" in content and "名前".encode() in content


def test_another_learners_data_never_appears(world, api):
    history(world)
    other_session = LearnerSessionFactory(
        learner=world.learner_b, course=world.course, consent=world.learner_b.consents.get()
    )
    ReadingFactory(session=other_session, sequence=0, face_crop=b"B-CROP-X")

    a = export_of(api(world.learner_a).get("/api/me/export/"))
    own = set(world.learner_a.learner_sessions.values_list("pk", flat=True))
    assert {s["id"] for s in a["sessions"]} == own
    assert {r["session"] for r in a["readings"]} == own
    assert len(a["readings"]) == Reading.objects.filter(session__learner=world.learner_a).count()
    content = json.dumps(a)
    assert "learner_b" not in content and "B-CROP" not in content
    assert base64.b64encode(b"B-CROP-0").decode() not in content

    b = export_of(api(world.learner_b).get("/api/me/export/"))
    assert {s["id"] for s in b["sessions"]} == {world.session_b.pk, other_session.pk}
    assert [base64.b64decode(r["face_crop_png_base64"]) for r in b["readings"]] == [
        b"B-CROP-0",
        b"B-CROP-1",
        b"B-CROP-2",
        b"B-CROP-X",
    ]
    assert b["user"]["username"] == "learner_b"


def test_who_gets_an_export_is_unchanged(world, api):
    """Anonymous callers get the API's 401 error (not a stream); any signed-in user gets their
    own document, an instructor's and an erased learner's without sessions or readings."""
    history(world)
    anonymous = api(None).get("/api/me/export/")
    assert anonymous.status_code == 401 and not anonymous.streaming
    assert anonymous["WWW-Authenticate"].startswith("Token")
    assert anonymous.json()["error"]["status"] == 401

    from rest_framework.test import APIClient

    bad_token = APIClient(HTTP_AUTHORIZATION="Token not-a-token").get("/api/me/export/")
    assert bad_token.status_code == 401 and not bad_token.streaming

    for user in (world.instructor, world.admin):
        doc = export_of(api(user).get("/api/me/export/"))
        assert doc["user"]["username"] == user.username
        assert doc["sessions"] == [] and doc["readings"] == []

    services.learner_data_erase(learner=world.learner_a)
    erased = export_of(api(world.learner_a).get("/api/me/export/"))
    assert erased["sessions"] == [] and erased["readings"] == []
    assert [c["revoked_at"] is not None for c in erased["consents"]] == [True]


def test_a_failure_part_way_is_logged_and_leaves_a_document_that_does_not_parse(
    world, api, monkeypatch, caplog
):
    for i in range(6):
        ReadingFactory(session=world.session_a, sequence=i)
    original, calls = selectors._export_reading, []

    def fails_at_the_fourth(row):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("the database went away")
        return original(row)

    monkeypatch.setattr(selectors, "_export_reading", fails_at_the_fourth)
    monkeypatch.setattr(MeExportApi, "piece_bytes", 1)
    r = api(world.learner_a).get("/api/me/export/")
    with caplog.at_level(logging.ERROR, logger="records.apis"):
        content = body_of(r)
    assert content.startswith(b'{"user":{"username":"learner_a"')
    assert content.count(b'"sequence":') == 3
    with pytest.raises(json.JSONDecodeError):
        json.loads(content)
    (record,) = [rec for rec in caplog.records if rec.name == "records.apis"]
    assert "learner_a" in record.getMessage() and record.exc_info[0] is RuntimeError


# --- under ASGI (what the server runs) --------------------------------------------------------------


async def asgi_get(path: str, token: str, *, on_body=None, leave_after_pieces=0):
    """One request through the project's ASGI application, as the server hands it over."""
    from config.asgi import application

    left = asyncio.Event()
    requested = False

    async def receive():
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await left.wait()
        return {"type": "http.disconnect"}

    messages = []

    async def send(message):
        messages.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            if on_body:
                on_body()
            if len(messages) - 1 == leave_after_pieces:
                left.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Token {token}".encode())],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    await application(scope, receive, send)
    return messages


def track(monkeypatch):
    """Which threads ran the view and closed the readings, and how many were rendered."""
    seen = {"view": [], "closed": [], "rendered": 0}
    export, readings, reading = (
        selectors.learner_export,
        selectors._export_readings,
        selectors._export_reading,
    )

    def tracked_export(*, learner):
        seen["view"].append(threading.get_ident())
        return export(learner=learner)

    def tracked_readings(learner):
        try:
            yield from readings(learner)
        finally:
            seen["closed"].append(threading.get_ident())

    def tracked_reading(row):
        seen["rendered"] += 1
        return reading(row)

    monkeypatch.setattr(selectors, "learner_export", tracked_export)
    monkeypatch.setattr(selectors, "_export_readings", tracked_readings)
    monkeypatch.setattr(selectors, "_export_reading", tracked_reading)
    return seen


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_under_asgi_the_body_goes_out_piece_by_piece_as_readings_are_read(world, monkeypatch):
    """Django's ASGI handler would read a plain synchronous body into a list before sending
    any of it; this one sends its first piece before the readings are all read, reads them on
    the view's thread (its connection holds the cursor) and is the same document."""
    require_service("PostgreSQL", connection.vendor == "postgresql", connection.vendor)
    history(world)  # committed: the request runs on its own thread and connection
    monkeypatch.setattr(selectors, "EXPORT_CHUNK_SIZE", 4)
    monkeypatch.setattr(MeExportApi, "piece_bytes", 1)
    seen = track(monkeypatch)
    rendered_at_first_piece = []
    token = api_token(world.learner_a)

    def on_body():
        if not rendered_at_first_piece:
            rendered_at_first_piece.append(seen["rendered"])

    messages = asyncio.run(asgi_get("/api/me/export/", token, on_body=on_body))
    start, *bodies = messages
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"Content-Type"] == b"application/json"
    assert headers[b"Content-Disposition"] == b'attachment; filename="learner_a-data.json"'
    assert rendered_at_first_piece == [0] and seen["rendered"] == 21
    assert len(bodies) > 20 and bodies[-1].get("more_body", False) is False
    content = b"".join(m.get("body", b"") for m in bodies)
    assert content == drf_bytes(reference_export(world.learner_a))
    assert seen["closed"] == seen["view"] and seen["view"][0] != threading.get_ident()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_under_asgi_a_client_that_leaves_stops_the_reading_on_the_views_thread(world, monkeypatch):
    """A client that leaves mid-download: nothing more is read, and the readings (their
    server-side cursor) are closed on the view's thread, whose connection holds them."""
    require_service("PostgreSQL", connection.vendor == "postgresql", connection.vendor)
    for i in range(100):
        ReadingFactory(session=world.session_a, sequence=i)
    monkeypatch.setattr(selectors, "EXPORT_CHUNK_SIZE", 2)
    monkeypatch.setattr(MeExportApi, "piece_bytes", 1)
    seen = track(monkeypatch)
    token = api_token(world.learner_a)

    # the head, then two readings: the readings' cursor is open when the client leaves
    messages = asyncio.run(asgi_get("/api/me/export/", token, leave_after_pieces=3))
    assert messages[0]["status"] == 200
    assert 2 <= seen["rendered"] < 100
    assert all(m.get("more_body") for m in messages[1:])  # never finished
    assert seen["closed"] == seen["view"]
