"""Client JSON is bounded in nesting depth and size: a 400/413 in the API's error shape, never
a 500 (Python's json raises RecursionError on deep nesting), signed in or not."""

import json

import pytest
from rest_framework.test import APIClient

from config.parsers import MAX_JSON_BODY_BYTES, MAX_JSON_DEPTH, JSONRejected, json_loads_bounded
from tests.factories import CourseFactory, UserFactory, enroll

DEEP = "[" * 5000 + "]" * 5000


def assert_json_error(r, status: int, code: str, words: str) -> None:
    assert r.status_code == status, (r.status_code, r.content[:300])
    err = r.json()["error"]
    assert (err["status"], err["code"]) == (status, code) and words in err["message"], err


@pytest.fixture
def course(db):
    course = CourseFactory()
    enroll(course, UserFactory(username="ana"))
    return course


def _clients(user):
    signed_in = APIClient()
    signed_in.force_authenticate(user)
    return {"anonymous": APIClient(), "signed in": signed_in}


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["anonymous", "signed in"])
@pytest.mark.parametrize("path", ["/api/auth/token/", "/api/sessions/", "consent"])
def test_deeply_nested_json_is_a_400_with_a_reason(course, who, path):
    learner = course.enrollments.get().learner
    path = f"/api/courses/{course.pk}/consent/" if path == "consent" else path
    client = _clients(learner)[who]
    for body in (DEEP, '{"a":' * 5000 + "1" + "}" * 5000):
        r = client.post(path, body, content_type="application/json")
        if who == "anonymous" and r.status_code == 401:  # refused before its body was read
            continue
        assert_json_error(r, 400, "parse_error", f"deeper than {MAX_JSON_DEPTH} levels")


@pytest.mark.django_db
def test_a_json_body_over_the_limit_is_a_413_before_it_is_parsed(course):
    body = json.dumps({"username": "x" * MAX_JSON_BODY_BYTES, "password": "y"})
    r = APIClient().post("/api/auth/token/", body, content_type="application/json")
    assert_json_error(r, 413, "request_too_large", str(MAX_JSON_BODY_BYTES))


@pytest.mark.django_db
def test_ordinary_json_still_works(course):
    learner = course.enrollments.get().learner
    c = _clients(learner)["signed in"]
    r = c.post(
        "/api/sessions/",
        {"course": course.pk, "client_info": {"screen": {"w": [1, [2, [3]]]}}},
        format="json",
    )
    assert r.status_code == 201, r.content
    r = APIClient().post("/api/auth/token/", {"username": "ana", "password": "nope"}, format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid"


def test_the_bounded_loader():
    assert json_loads_bounded('{"a": ["[[[[", {"b": 1}]}', max_bytes=100) == {
        "a": ["[[[[", {"b": 1}]
    }
    ok = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert json_loads_bounded(ok, max_bytes=10_000) is not None
    for bad, why in ((DEEP, "deeper than"), ("[" + "1," * 600 + "1]", "exceeds the limit")):
        with pytest.raises(JSONRejected, match=why):
            json_loads_bounded(bad, max_bytes=1000 if why != "deeper than" else 10**6)
    with pytest.raises(ValueError):
        json_loads_bounded("{nope", max_bytes=100)
