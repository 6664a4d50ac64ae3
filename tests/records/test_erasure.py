"""Erasure (the learner's page and API, the admin's action) and the admin's deletes of
accounts, sessions and courses end open sessions first, and the live dashboard is told."""

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.test import Client

from emotion.models import Reading
from tests.factories import ReadingFactory, UserFactory
from tests.tutoring.conftest import ended_broadcasts
from tutoring.models import Consent, Course, LearnerSession, User

ERASE_URL = "/learn/data/erase/"


def browser(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


# --- the learner's erase page ------------------------------------------------------------------


@pytest.fixture
def with_readings(world):
    for i in range(3):
        ReadingFactory(session=world.session_a, sequence=i)
        ReadingFactory(session=world.session_b, sequence=i)
    ReadingFactory(session=world.session_a, sequence=3, face_crop=b"png")
    return world


def test_erase_page_shows_what_will_be_erased(with_readings):
    r = browser(with_readings.learner_a).get(ERASE_URL)
    assert r.status_code == 200
    page = r.content.decode()
    assert "<strong>1</strong> recording session(s), of which\n      1 still open" in page
    assert "<strong>4</strong> analysed picture record(s)" in page
    assert "1 small face thumbnail(s)" in page
    assert "csrfmiddlewaretoken" in page and 'name="confirm"' in page
    assert Reading.objects.count() == 7  # looking erases nothing


def test_erase_page_needs_the_typed_confirmation(with_readings):
    r = browser(with_readings.learner_a).post(ERASE_URL, {"confirm": "yes"})
    assert r.status_code == 400 and "Nothing was erased" in r.content.decode()
    assert Reading.objects.filter(session__learner=with_readings.learner_a).count() == 4
    assert LearnerSession.objects.filter(learner=with_readings.learner_a).exists()


def test_erase_page_erases_only_the_callers_data_and_ends_the_open_session(
    with_readings, sent, django_capture_on_commit_callbacks
):
    w = with_readings
    c = browser(w.learner_a)
    with django_capture_on_commit_callbacks(execute=True):
        r = c.post(ERASE_URL, {"confirm": " erase "})
    assert r.status_code == 302 and r["Location"] == "/learn/"
    assert not Reading.objects.filter(session__learner=w.learner_a).exists()
    assert not LearnerSession.objects.filter(learner=w.learner_a).exists()
    assert Reading.objects.filter(session=w.session_b).count() == 3  # not theirs: kept
    consents = Consent.objects.filter(learner=w.learner_a)
    assert consents.count() == 1 and consents.get().revoked_at is not None  # the record stays
    assert ended_broadcasts(sent, w.session_a) == {
        (f"course-{w.course.pk}", "data_erased"),
        (f"session-{w.session_a.pk}", "data_erased"),
    }
    assert "Your data is erased: 1 session(s) and 4 reading(s)" in c.get("/learn/").content.decode()


def test_erase_api_also_ends_open_sessions_first(
    with_readings, sent, api, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        r = api(with_readings.learner_a).delete("/api/me/data/")
    assert r.json() == {"readings": 4, "sessions": 1, "consents_revoked": 1}
    assert (f"course-{with_readings.course.pk}", "data_erased") in ended_broadcasts(
        sent, with_readings.session_a
    )


@pytest.mark.parametrize("method", ["get", "post"])
def test_erase_page_needs_login(with_readings, method):
    r = getattr(Client(), method)(ERASE_URL, {"confirm": "ERASE"})
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/?next=")
    assert Reading.objects.count() == 7


def test_erase_page_is_csrf_protected(with_readings):
    c = Client(enforce_csrf_checks=True)
    c.force_login(with_readings.learner_a)
    assert c.post(ERASE_URL, {"confirm": "ERASE"}).status_code == 403
    assert Reading.objects.filter(session__learner=with_readings.learner_a).count() == 4


def test_erase_page_is_for_learners(with_readings):
    assert browser(with_readings.instructor).get(ERASE_URL).status_code == 403
    assert (
        browser(with_readings.instructor).post(ERASE_URL, {"confirm": "ERASE"}).status_code == 403
    )
    assert Reading.objects.count() == 7


# --- staff: erasure on request, deletes --------------------------------------------------------


def test_admin_action_confirms_then_erases_through_the_service(
    with_readings, admin_client, sent, django_capture_on_commit_callbacks
):
    w = with_readings
    form = {"action": "erase_learner_data", "_selected_action": [w.learner_a.pk]}
    r = admin_client.post("/admin/tutoring/user/", form)
    assert r.status_code == 200
    page = r.content.decode()
    assert "Erase learner data" in page and "learner_a" in page and "<td>4</td>" in page
    assert Reading.objects.filter(session__learner=w.learner_a).count() == 4  # not yet

    with django_capture_on_commit_callbacks(execute=True):
        r = admin_client.post("/admin/tutoring/user/", {**form, "confirm": "yes"}, follow=True)
    assert r.status_code == 200
    assert "Erased the learning data of 1 user(s): 1 session(s), 4 reading(s)" in (
        r.content.decode()
    )
    assert not LearnerSession.objects.filter(learner=w.learner_a).exists()
    assert Reading.objects.filter(session=w.session_b).count() == 3
    assert (f"course-{w.course.pk}", "data_erased") in ended_broadcasts(sent, w.session_a)
    assert User.objects.filter(pk=w.learner_a.pk).exists()  # the account stays
    entry = LogEntry.objects.get(object_id=str(w.learner_a.pk))
    assert "erased on request" in entry.get_change_message()


def test_admin_erase_action_needs_the_permission(with_readings):
    staff = UserFactory(username="helpdesk", is_staff=True, role=User.Role.ADMIN)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_user", "change_user"])
    )
    c = Client()
    c.force_login(staff)
    assert "erase_learner_data" not in c.get("/admin/tutoring/user/").content.decode()
    form = {
        "action": "erase_learner_data",
        "_selected_action": [with_readings.learner_a.pk],
        "confirm": "yes",
    }
    c.post("/admin/tutoring/user/", form)
    assert Reading.objects.filter(session__learner=with_readings.learner_a).count() == 4


def test_deleting_an_account_in_admin_erases_its_data_first_and_tells_the_dashboard(
    world, admin_client, sent, django_capture_on_commit_callbacks
):
    """One delete, no erase-first dance: the open session is ended and announced, then the
    sessions, readings, consents and the account go."""
    learner = world.session_a.learner
    ReadingFactory(session=world.session_a, sequence=0)
    with django_capture_on_commit_callbacks(execute=True):
        r = admin_client.post(f"/admin/tutoring/user/{learner.pk}/delete/", {"post": "yes"})
    assert r.status_code == 302
    assert not User.objects.filter(pk=learner.pk).exists()
    assert not Consent.objects.filter(learner_id=learner.pk).exists()
    assert not LearnerSession.objects.filter(learner_id=learner.pk).exists()
    assert not Reading.objects.filter(session_id=world.session_a.pk).exists()
    assert ended_broadcasts(sent, world.session_a) == {
        (f"course-{world.course.pk}", "data_erased"),
        (f"session-{world.session_a.pk}", "data_erased"),
    }
    assert LearnerSession.objects.filter(pk=world.session_b.pk).exists()  # someone else's


def test_bulk_deleting_accounts_goes_through_the_same_erasure(world, admin_client, sent):
    ids = [world.learner_a.pk, world.learner_b.pk]
    r = admin_client.post(
        "/admin/tutoring/user/",
        {"action": "delete_selected", "_selected_action": ids, "post": "yes"},
    )
    assert r.status_code == 302
    assert not User.objects.filter(pk__in=ids).exists()
    assert not LearnerSession.objects.filter(course=world.course).exists()


def test_deleting_a_session_in_admin_ends_it_first_and_tells_the_dashboard(
    world, admin_client, sent, django_capture_on_commit_callbacks
):
    ReadingFactory(session=world.session_a, sequence=0)
    with django_capture_on_commit_callbacks(execute=True):
        r = admin_client.post(
            f"/admin/tutoring/learnersession/{world.session_a.pk}/delete/", {"post": "yes"}
        )
    assert r.status_code == 302
    assert not LearnerSession.objects.filter(pk=world.session_a.pk).exists()
    assert not Reading.objects.filter(session_id=world.session_a.pk).exists()
    assert ended_broadcasts(sent, world.session_a) == {
        (f"course-{world.course.pk}", "deleted"),
        (f"session-{world.session_a.pk}", "deleted"),
    }
    # the consent record stays
    assert Consent.objects.filter(pk=world.session_a.consent_id).exists()
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            "/admin/tutoring/learnersession/",
            {"action": "delete_selected", "_selected_action": [world.session_b.pk], "post": "yes"},
        )
    assert ended_broadcasts(sent, world.session_b) == {
        (f"course-{world.course.pk}", "deleted"),
        (f"session-{world.session_b.pk}", "deleted"),
    }


def test_deleting_a_course_in_admin_ends_its_open_sessions_first(
    world, admin_client, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        r = admin_client.post(f"/admin/tutoring/course/{world.course.pk}/delete/", {"post": "yes"})
    assert r.status_code == 302
    assert not LearnerSession.objects.filter(pk=world.session_a.pk).exists()
    assert ended_broadcasts(sent, world.session_a) == {
        (f"course-{world.course.pk}", "course_deleted"),
        (f"session-{world.session_a.pk}", "course_deleted"),
    }
    assert Course.objects.filter(pk=world.other_course.pk).exists()
