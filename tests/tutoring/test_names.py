"""One way to name a person (issue 23): the full name, else the username, on every page, live
event, report and admin list; the username stays where it is an identifier (``learner``
columns of the reports and their CSV)."""

import csv
import io

import pytest

from tests.factories import ReadingFactory, UserFactory
from tutoring.models import User


@pytest.fixture
def named(world):
    User.objects.filter(pk=world.learner_a.pk).update(first_name="Ada", last_name="Lovelace")
    world.learner_a.refresh_from_db()
    ReadingFactory(session=world.session_a, sequence=0)
    return world


def test_display_name_is_the_full_name_else_the_username(db):
    assert UserFactory(username="x1", first_name="Ada", last_name="Lovelace").display_name == (
        "Ada Lovelace"
    )
    assert UserFactory(username="x2", first_name="Ada").display_name == "Ada"
    assert UserFactory(username="x3").display_name == "x3"


def test_reports_carry_the_name_beside_the_username(named, api):
    c = api(named.instructor)
    rows = c.get(f"/api/courses/{named.course.pk}/report/").json()["learners"]
    assert [(r["learner"], r["learner_name"]) for r in rows] == [
        ("learner_a", "Ada Lovelace"),
        ("learner_b", "learner_b"),
    ]
    r = c.get(f"/api/courses/{named.course.pk}/report/?format=csv")
    row = next(csv.DictReader(io.StringIO(r.content.decode())))
    assert (row["learner"], row["learner_name"]) == ("learner_a", "Ada Lovelace")
    r = c.get(f"/api/sessions/{named.session_a.pk}/report/?format=csv")
    row = next(csv.DictReader(io.StringIO(r.content.decode())))
    assert (row["learner"], row["learner_name"]) == ("learner_a", "Ada Lovelace")
    session = c.get(f"/api/sessions/{named.session_a.pk}/").json()
    assert (session["learner"], session["learner_name"]) == ("learner_a", "Ada Lovelace")


def test_pages_name_people_by_display_name(named, client):
    client.force_login(named.instructor)
    page = client.get(f"/teach/courses/{named.course.pk}/reports/").content.decode()
    assert ">Ada Lovelace</a></th>" in page and ">learner_b</a></th>" in page
    page = client.get(f"/teach/sessions/{named.session_a.pk}/").content.decode()
    assert "Ada Lovelace — session" in page


def test_the_admin_lists_name_learners_and_find_them_by_name(named, admin_client):
    page = admin_client.get("/admin/tutoring/learnersession/?q=Lovelace").content.decode()
    assert "Ada Lovelace (learner_a)" in page and "learner_b" not in page
    page = admin_client.get("/admin/tutoring/user/").content.decode()
    assert "Ada Lovelace" in page
