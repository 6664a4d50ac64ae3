"""Every endpoint × every kind of caller, with the status each must get.

404 (not 403) for objects the caller may not know exist: another instructor's course, another
learner's session. 403 where the caller can see the object but not do the thing.
"""

import pytest

ACTORS = ["anonymous", "learner_a", "learner_b", "instructor", "other_instructor", "admin"]

# endpoint: (method, path template, body, expected status per actor in ACTORS order)
MATRIX = {
    "course list": ("get", "/api/courses/", None, [401, 200, 200, 200, 200, 200]),
    "course detail": ("get", "/api/courses/{course}/", None, [401, 200, 200, 200, 404, 200]),
    "consent get": ("get", "/api/courses/{course}/consent/", None, [401, 200, 200, 403, 404, 403]),
    "consent grant": (
        "post",
        "/api/courses/{course}/consent/",
        {"scope": ["engagement"]},
        [401, 201, 201, 403, 404, 403],
    ),
    "consent revoke": (
        "delete",
        "/api/courses/{course}/consent/",
        None,
        [401, 200, 200, 403, 404, 403],
    ),
    "session start": (
        "post",
        "/api/sessions/",
        {"course": "{course}"},
        [401, 201, 201, 403, 404, 403],
    ),
    "session detail": ("get", "/api/sessions/{session_a}/", None, [401, 200, 404, 200, 404, 200]),
    "session end": ("post", "/api/sessions/{session_a}/end/", None, [401, 200, 404, 200, 404, 200]),
    "course sessions": (
        "get",
        "/api/courses/{course}/sessions/",
        None,
        [401, 200, 200, 200, 404, 200],
    ),
    "session timeline": (
        "get",
        "/api/sessions/{session_a}/timeline/",
        None,
        [401, 200, 404, 200, 404, 200],
    ),
    "session report": (
        "get",
        "/api/sessions/{session_a}/report/",
        None,
        [401, 200, 404, 200, 404, 200],
    ),
    "course report": ("get", "/api/courses/{course}/report/", None, [401, 403, 403, 200, 404, 200]),
    "my export": ("get", "/api/me/export/", None, [401, 200, 200, 200, 200, 200]),
    "my data erase": ("delete", "/api/me/data/", None, [401, 200, 200, 200, 200, 200]),
}

CASES = [
    pytest.param(name, actor, expected[i], id=f"{name}-{actor}")
    for name, (_, _, _, expected) in MATRIX.items()
    for i, actor in enumerate(ACTORS)
]


def _fill(value, ids):
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


@pytest.mark.parametrize(("endpoint", "actor", "expected"), CASES)
def test_permission_matrix(world, api, endpoint, actor, expected):
    method, path, body, _ = MATRIX[endpoint]
    ids = {"course": world.course.pk, "session_a": world.session_a.pk}
    body = _fill(body, ids)
    if isinstance(body, dict) and "course" in body:
        body["course"] = int(body["course"])
    r = getattr(api(world.actor(actor)), method)(_fill(path, ids), body, format="json")
    assert r.status_code == expected, r.content[:300]
    if expected >= 400:
        err = r.json()["error"]
        assert err["status"] == expected and err["message"]


def test_lists_only_show_what_the_caller_may_see(world, api):
    ids = lambda r: sorted(c["id"] for c in r.json()["results"])  # noqa: E731
    assert ids(api(world.instructor).get("/api/courses/")) == [world.course.pk]
    assert ids(api(world.other_instructor).get("/api/courses/")) == [world.other_course.pk]
    assert ids(api(world.learner_a).get("/api/courses/")) == [world.course.pk]
    assert ids(api(world.admin).get("/api/courses/")) == [world.course.pk, world.other_course.pk]
    own = api(world.learner_a).get(f"/api/courses/{world.course.pk}/sessions/").json()["results"]
    assert [s["id"] for s in own] == [world.session_a.pk]
    both = api(world.instructor).get(f"/api/courses/{world.course.pk}/sessions/").json()
    assert {s["id"] for s in both["results"]} == {world.session_a.pk, world.session_b.pk}
