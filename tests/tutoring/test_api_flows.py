"""What users do through the API: tokens, consent, sessions, exports, erasure."""

import json

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from emotion.models import Reading
from tests.factories import ReadingFactory, api_token
from tutoring.models import Consent, LearnerSession, User


@pytest.mark.django_db
def test_seed_demo_is_idempotent_and_tokens_work(capsys):
    call_command("seed_demo")
    out = capsys.readouterr().out
    assert "instructor1" in out and "demo-pass-123" in out
    call_command("seed_demo")  # creates nothing more, and prints no credential again
    again = capsys.readouterr().out
    assert "demo-pass-123" not in again and "No demo account created." in again
    assert User.objects.filter(username__in=["admin", "instructor1", "learner3"]).count() == 3
    c = APIClient()
    r = c.post("/api/auth/token/", {"username": "instructor1", "password": "demo-pass-123"})
    assert r.status_code == 200
    c.credentials(HTTP_AUTHORIZATION=f"Token {r.json()['token']}")
    titles = [x["title"] for x in c.get("/api/courses/").json()["results"]]
    assert titles == ["Algebra I"]  # instructor1 teaches only this one
    bad = APIClient().post("/api/auth/token/", {"username": "instructor1", "password": "nope"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid"


def test_learner_cannot_read_another_learners_session_by_token(world):
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Token {api_token(world.learner_b)}")
    assert c.get(f"/api/sessions/{world.session_a.pk}/").status_code == 404
    assert c.get(f"/api/sessions/{world.session_b.pk}/").status_code == 200
    assert APIClient().get("/api/courses/").status_code == 401


def test_consent_revocation_blocks_new_sessions_and_ends_open_ones(world, api):
    c = api(world.learner_a)
    url = f"/api/courses/{world.course.pk}/consent/"
    assert c.delete(url).status_code == 200
    world.session_a.refresh_from_db()
    assert world.session_a.status == "ended" and world.session_a.end_reason == "consent_revoked"
    r = c.post("/api/sessions/", {"course": world.course.pk}, format="json")
    assert r.status_code == 403 and "consent" in r.json()["error"]["message"]
    assert c.delete(url).status_code == 400  # nothing left to revoke
    # granting again works, and the history is kept
    assert c.post(url, {"scope": ["engagement", "emotion"]}, format="json").status_code == 201
    # the same grant again changes nothing, and says so: 200 with the same consent
    again = c.post(url, {"scope": ["engagement", "emotion"]}, format="json")
    assert again.status_code == 200
    assert again.json()["id"] == c.get(url).json()["id"]
    assert c.post("/api/sessions/", {"course": world.course.pk}, format="json").status_code == 201
    history = Consent.objects.filter(learner=world.learner_a, course=world.course)
    assert history.count() == 2 and history.filter(revoked_at__isnull=True).count() == 1


def test_emotion_scope_refused_in_engagement_only_course(world, api):
    world.course.emotion_inference_enabled = False
    world.course.save()
    r = api(world.learner_a).post(
        f"/api/courses/{world.course.pk}/consent/",
        {"scope": ["engagement", "emotion"]},
        format="json",
    )
    assert r.status_code == 400 and "engagement-only" in r.json()["error"]["message"]
    r = api(world.learner_a).post(
        f"/api/courses/{world.course.pk}/consent/", {"scope": ["engagement"]}, format="json"
    )
    assert r.status_code == 201
    s = api(world.learner_a).post("/api/sessions/", {"course": world.course.pk}, format="json")
    assert s.json()["emotion_enabled"] is False


def test_session_start_supersedes_an_open_one_and_validates_input(world, api):
    c = api(world.learner_a)
    r = c.post(
        "/api/sessions/",
        {"course": world.course.pk, "client_info": {"user_agent": "x" * 1000, "secret": "drop"}},
        format="json",
    )
    assert r.status_code == 201
    assert r.json()["client_info"] == {"user_agent": "x" * 300}
    world.session_a.refresh_from_db()
    assert world.session_a.status == "ended" and world.session_a.end_reason == "superseded"
    bad = c.post("/api/sessions/", {"course": "abc"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["details"]["course"]
    assert c.post("/api/sessions/", {"course": 999999}, format="json").status_code == 404


def test_session_list_filters(world, api):
    api(world.learner_b).post(f"/api/sessions/{world.session_b.pk}/end/")
    c = api(world.instructor)
    base = f"/api/courses/{world.course.pk}/sessions/"
    assert [s["id"] for s in c.get(f"{base}?status=ended").json()["results"]] == [
        world.session_b.pk
    ]
    by_learner = c.get(f"{base}?learner={world.learner_a.pk}").json()["results"]
    assert [s["id"] for s in by_learner] == [world.session_a.pk]
    assert c.get(f"{base}?from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z").json()["count"] == 0
    assert c.get(f"{base}?from=yesterday").status_code == 400


def test_export_and_erase_touch_only_the_caller(world, api):
    for i in range(3):
        ReadingFactory(session=world.session_a, sequence=i)
        ReadingFactory(session=world.session_b, sequence=i)
    export = json.loads(b"".join(api(world.learner_a).get("/api/me/export/").streaming_content))
    assert export["user"]["username"] == "learner_a"
    assert {r["session"] for r in export["readings"]} == {world.session_a.pk}
    assert len(export["readings"]) == 3 and export["consents"][0]["scopes"]
    before = api(world.instructor).get(f"/api/courses/{world.course.pk}/report/").json()
    assert [r["learner"] for r in before["learners"]] == ["learner_a", "learner_b"]

    r = api(world.learner_a).delete("/api/me/data/")
    assert r.json() == {"readings": 3, "sessions": 1, "consents_revoked": 1}
    assert not Reading.objects.filter(session__learner=world.learner_a).exists()
    assert not LearnerSession.objects.filter(learner=world.learner_a).exists()
    assert Reading.objects.filter(session=world.session_b).count() == 3
    after = api(world.instructor).get(f"/api/courses/{world.course.pk}/report/").json()
    assert [r["learner"] for r in after["learners"]] == ["learner_b"]
    assert after["overall"]["n_frames"] == 3


def test_out_of_range_ids_and_impossible_dates_are_client_errors(world, api):
    c = api(world.instructor)
    huge = "9" * 25
    assert c.get(f"/api/courses/{huge}/").status_code == 404
    assert c.get(f"/api/sessions/{huge}/timeline/").status_code == 404
    assert (
        api(world.learner_a)
        .post("/api/sessions/", {"course": int(huge)}, format="json")
        .status_code
        == 400
    )
    base = f"/api/courses/{world.course.pk}"
    assert c.get(f"{base}/sessions/?learner={huge}").status_code == 400
    r = c.get(f"{base}/report/?from=2026-02-30")
    assert r.status_code == 400 and "not a valid date" in r.json()["error"]["message"]


# valid ISO times whose UTC equivalent is outside years 1–9999 (SQLite stores UTC: a 500 there)
OUT_OF_UTC_RANGE = [("from", "9999-12-31T23:59:59-23:00"), ("to", "0001-01-01T00:00:00+01:00")]


@pytest.mark.parametrize("name, value", OUT_OF_UTC_RANGE)
def test_parse_when_refuses_times_outside_utc_years(name, value):
    from rest_framework.exceptions import ValidationError

    from config.params import parse_when

    with pytest.raises(ValidationError) as e:
        parse_when(value, name)
    assert list(e.value.detail) == [name] and "out of range" in str(e.value.detail[name])
    # the far ends themselves, in UTC or without an offset (UTC here), are fine
    assert parse_when("9999-12-31T23:59:59Z", name).year == 9999
    assert parse_when("0001-01-01", name).year == 1


@pytest.mark.parametrize("name, value", OUT_OF_UTC_RANGE)
def test_times_outside_utc_years_are_json_400s(world, api, name, value):
    c = api(world.instructor)
    for url in (
        f"/api/courses/{world.course.pk}/report/",
        f"/api/courses/{world.course.pk}/sessions/",
        f"/api/sessions/{world.session_a.pk}/readings/",
    ):
        r = c.get(url, {name: value})
        assert r.status_code == 400 and r["Content-Type"] == "application/json", url
        err = r.json()["error"]
        assert (err["status"], err["code"]) == (400, "invalid")
        assert err["message"].startswith(f"{name}: out of range") and list(err["details"]) == [name]


@pytest.mark.parametrize("name", ["from", "to"])
def test_any_iso_offset_reaches_the_database_as_utc(world, api, name):
    """PostgreSQL refuses offsets beyond ±15:59 that ISO allows: -23:00 was a 500."""
    c = api(world.instructor)
    value = "2000-01-01T00:00:00-23:00" if name == "to" else "2100-01-01T00:00:00+23:30"
    for url in (
        f"/api/courses/{world.course.pk}/report/",
        f"/api/courses/{world.course.pk}/sessions/",
        f"/api/sessions/{world.session_a.pk}/readings/",
    ):
        r = c.get(url, {name: value})
        assert r.status_code == 200, (url, r.content)
    report = c.get(f"/api/courses/{world.course.pk}/report/", {name: value}).json()
    assert report[name] == ("2000-01-01T23:00:00Z" if name == "to" else "2099-12-31T00:30:00Z")


def test_session_list_range_takes_dates_like_the_reports(world, api):
    base = f"/api/courses/{world.course.pk}/sessions/"
    c = api(world.instructor)
    assert c.get(base, {"from": "2000-01-01", "to": "2000-01-02"}).json()["count"] == 0
    assert c.get(base, {"from": "2000-01-01"}).json()["count"] == 2
    assert c.get(base, {"from": "2026-02-30"}).status_code == 400
