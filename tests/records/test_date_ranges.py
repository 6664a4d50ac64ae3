"""Every endpoint and page that takes a ``from``/``to`` range answers a reversed or empty one
the same way: 400 with the reason (the API's error shape, the page's message), never an empty
200. The session list and the readings answered 200 with nothing in it while the report
answered 400."""

import pytest

REVERSED = ["from=2026-01-02&to=2026-01-01", "from=2026-01-02T10:00:00Z&to=2026-01-02T10:00:00Z"]


URLS = [
    "/api/courses/{course}/sessions/?",
    "/api/courses/{course}/report/?",
    "/api/courses/{course}/report/?format=csv&",
    "/api/sessions/{session}/readings/?",
]


def url_for(world, url: str, query: str) -> str:
    return url.format(course=world.course.pk, session=world.session_a.pk) + query


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("query", REVERSED)
def test_every_api_range_rejects_a_reversed_or_empty_one(world, api, url, query):
    r = api(world.instructor).get(url_for(world, url, query))
    assert r.status_code == 400
    if "format=csv" in url:
        assert "must be later than from" in r.content.decode()
        return
    error = r.json()["error"]
    assert (error["status"], error["code"]) == (400, "invalid")
    assert error["message"].startswith("to: must be later than from")
    assert set(error["details"]) == {"to"}


@pytest.mark.parametrize("url", URLS)
def test_a_forward_range_is_still_served(world, api, url):
    r = api(world.instructor).get(url_for(world, url, "from=2000-01-01&to=2100-01-01"))
    assert r.status_code == 200


@pytest.mark.parametrize("query", REVERSED)
def test_the_reports_page_says_why_a_range_is_refused(client, world, query):
    client.force_login(world.instructor)
    r = client.get(f"/teach/courses/{world.course.pk}/reports/?{query}")
    assert r.status_code == 400
    assert "The end date must be after the start date." in r.content.decode()
