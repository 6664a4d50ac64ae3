"""The course API's list and detail: what each course shows the caller, in a fixed number of
queries however many courses there are."""

import pytest

from tests.factories import CourseFactory, UserFactory, enroll


def _queries(fn) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


def _add_courses(world, n):
    for _ in range(n):
        c = CourseFactory(instructors=[world.instructor])
        enroll(c, world.learner_a, UserFactory())


@pytest.mark.parametrize("who", ["instructor", "learner_a", "admin"])
def test_course_list_query_count_does_not_grow_with_courses(
    world, api, who, django_assert_max_num_queries
):
    client = api(world.actor(who))
    one = _queries(lambda: client.get("/api/courses/?page_size=500"))
    _add_courses(world, 9)
    with django_assert_max_num_queries(one):
        r = client.get("/api/courses/?page_size=500")
    assert r.status_code == 200
    results = r.json()["results"]
    mine = [c for c in results if c["id"] != world.course.pk]
    assert len(mine) >= 9
    if who == "learner_a":
        assert all(c["learner_count"] is None for c in results)
        assert all(c["my_consent"]["scopes"] == ["engagement", "emotion"] for c in results)
    else:
        algebra = next(c for c in results if c["id"] == world.course.pk)
        assert algebra["learner_count"] == 2 and algebra["my_consent"] is None
        assert all(c["learner_count"] == 2 for c in mine if c["title"] != "Chemistry")


def test_course_output_only_shows_the_learners_active_consent(world, api):
    from tutoring import services

    services.consent_revoke(learner=world.learner_a, course=world.course)
    body = api(world.learner_a).get("/api/courses/").json()["results"]
    assert [c["my_consent"] for c in body] == [None]
    detail = api(world.learner_a).get(f"/api/courses/{world.course.pk}/").json()
    assert detail["my_consent"] is None and detail["learner_count"] is None
    detail = api(world.instructor).get(f"/api/courses/{world.course.pk}/").json()
    assert detail["learner_count"] == 2
    assert api(world.instructor).get(f"/api/courses/{world.other_course.pk}/").status_code == 404
