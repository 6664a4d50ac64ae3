"""GET /api/me/export/: everything stored about the caller (GDPR Art. 15/20)."""

import base64
import datetime as dt

from django.utils import timezone

from emotion.models import Reading
from tests.factories import ReadingFactory

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))  # stands in for a 48×48 crop


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
    body = r.json()
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
    assert "reviewed_by" not in first and world.admin.username not in r.content.decode()
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
    body = api(world.learner_a).get("/api/me/export/").json()
    assert [r["face_crop_kept"] for r in body["readings"]] == [False, True, False, True, False]
