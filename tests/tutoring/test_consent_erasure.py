"""Consent changes and erasure keep sessions consistent, and the live dashboard is told."""

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.test import Client

from emotion.models import Reading
from emotion.services import SessionClosed, session_check_ingest
from tests.factories import ReadingFactory, UserFactory
from tests.tutoring.conftest import ended_broadcasts
from tutoring import services
from tutoring.models import Consent, Course, LearnerSession, User
from tutoring.signals import consent_ended

ERASE_URL = "/learn/data/erase/"


def browser(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


# --- consent given again ------------------------------------------------------------------------


def test_double_submitted_consent_form_keeps_the_consent_and_the_open_session(world, sent):
    c = browser(world.learner_a)
    consent = world.session_a.consent
    url = f"/learn/courses/{world.course.pk}/consent/"
    for _ in range(2):  # the same form, submitted twice
        assert c.post(url, {"engagement": "on", "emotion": "on"}).status_code == 302
    assert list(Consent.objects.filter(learner=world.learner_a, course=world.course)) == [consent]
    assert Consent.objects.get(pk=consent.pk).revoked_at is None
    world.session_a.refresh_from_db()
    assert world.session_a.status == "active"
    session_check_ingest(session=world.session_a)  # frames are still accepted
    assert (
        "Continue your open session" in c.get(f"/learn/courses/{world.course.pk}/").content.decode()
    )
    assert sent == []


def test_consent_with_other_scopes_supersedes_and_ends_the_open_session(
    world, sent, django_capture_on_commit_callbacks
):
    old = world.session_a.consent
    assert old.emotion is True
    with django_capture_on_commit_callbacks(execute=True):
        new = services.consent_grant(
            learner=world.learner_a, course=world.course, engagement=True, emotion=False
        )
    assert new.pk != old.pk and new.active and not new.emotion
    old.refresh_from_db()
    assert old.revoked_at is not None
    world.session_a.refresh_from_db()
    assert world.session_a.status == "ended"
    assert world.session_a.end_reason == "consent_superseded"
    assert ended_broadcasts(sent, world.session_a) == {
        (f"course-{world.course.pk}", "consent_superseded"),
        (f"session-{world.session_a.pk}", "consent_superseded"),
    }
    world.session_b.refresh_from_db()
    assert world.session_b.status == "active"  # another learner's session is untouched
    page = browser(world.learner_a).get(f"/learn/courses/{world.course.pk}/").content.decode()
    assert "Continue your open session" not in page and "Start a session" in page


def test_new_policy_version_supersedes_even_with_the_same_scopes(world, sent):
    world.course.consent_policy_version = "2027-01"
    world.course.save()
    new = services.consent_grant(
        learner=world.learner_a, course=world.course, engagement=True, emotion=True
    )
    assert new.policy_version == "2027-01" and new.pk != world.session_a.consent_id
    world.session_a.refresh_from_db()
    assert world.session_a.end_reason == "consent_superseded"


def test_revoking_ends_open_sessions_and_tells_the_dashboard(
    world, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        r = browser(world.learner_a).post(f"/learn/courses/{world.course.pk}/revoke/")
    assert r.status_code == 302
    world.session_a.refresh_from_db()
    assert world.session_a.status == "ended" and world.session_a.end_reason == "consent_revoked"
    assert ended_broadcasts(sent, world.session_a) == {
        (f"course-{world.course.pk}", "consent_revoked"),
        (f"session-{world.session_a.pk}", "consent_revoked"),
    }
    with pytest.raises(SessionClosed):  # 409 "ended", not a silent 403 forever
        session_check_ingest(session=world.session_a)


# --- consent_ended: what its receivers (emotion discards pending frames) rely on -----------------


@pytest.fixture
def ended_consents():
    """What a receiver of ``consent_ended`` saw, per call."""
    calls = []

    def receiver(sender, consent, **kwargs):
        calls.append(
            {
                "sender": sender,
                "consent": consent.pk,
                "revoked": Consent.objects.get(pk=consent.pk).revoked_at is not None,
                "open_sessions": LearnerSession.objects.filter(
                    consent=consent, status=LearnerSession.Status.ACTIVE
                ).count(),
            }
        )

    consent_ended.connect(receiver, dispatch_uid="test.ended_consents")
    yield calls
    consent_ended.disconnect(dispatch_uid="test.ended_consents")


def test_revoking_sends_consent_ended_once_the_open_sessions_are_ended(world, sent, ended_consents):
    consent = world.session_a.consent
    services.consent_revoke(learner=world.learner_a, course=world.course)
    assert ended_consents == [
        {"sender": Consent, "consent": consent.pk, "revoked": True, "open_sessions": 0}
    ]


def test_superseding_sends_consent_ended_for_the_old_consent(world, sent, ended_consents):
    old = world.session_a.consent
    new = services.consent_grant(
        learner=world.learner_a, course=world.course, engagement=True, emotion=False
    )
    assert new.pk != old.pk
    assert ended_consents == [
        {"sender": Consent, "consent": old.pk, "revoked": True, "open_sessions": 0}
    ]


def test_the_same_grant_again_sends_nothing(world, sent, ended_consents):
    services.consent_grant(
        learner=world.learner_a, course=world.course, engagement=True, emotion=True
    )
    assert ended_consents == []


def test_a_failing_receiver_undoes_the_consent_change(world, sent):
    """Receivers run inside the consent change's transaction: their failure is its failure."""

    def boom(sender, consent, **kwargs):
        raise RuntimeError("receiver failed")

    consent_ended.connect(boom, dispatch_uid="test.boom")
    try:
        with pytest.raises(RuntimeError, match="receiver failed"):
            services.consent_revoke(learner=world.learner_a, course=world.course)
    finally:
        consent_ended.disconnect(dispatch_uid="test.boom")
    assert Consent.objects.get(pk=world.session_a.consent_id).revoked_at is None
    world.session_a.refresh_from_db()
    assert world.session_a.status == "active"


# --- the learner's erase page ------------------------------------------------------------------


@pytest.fixture
def with_readings(world):
    for i in range(3):
        ReadingFactory(session=world.session_a, sequence=i)
        ReadingFactory(session=world.session_b, sequence=i)
    ReadingFactory(session=world.session_a, sequence=3, face_crop=b"png")
    return world


def test_course_page_links_to_the_erase_page(world):
    c = browser(world.learner_a)
    assert ERASE_URL in c.get(f"/learn/courses/{world.course.pk}/").content.decode()
    services.consent_revoke(learner=world.learner_a, course=world.course)  # the consent screen
    assert ERASE_URL in c.get(f"/learn/courses/{world.course.pk}/").content.decode()


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


# --- staff: erasure on request, consent history ------------------------------------------------


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


def test_consent_records_cannot_be_deleted_by_staff_in_admin(world):
    staff = UserFactory(username="clerk", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="tutoring"))
    c = Client()
    c.force_login(staff)
    consent = world.session_a.consent
    assert c.get(f"/admin/tutoring/consent/{consent.pk}/delete/").status_code == 403
    assert "delete_selected" not in c.get("/admin/tutoring/consent/").content.decode()
    c.post(
        "/admin/tutoring/consent/", {"action": "delete_selected", "_selected_action": [consent.pk]}
    )
    assert Consent.objects.filter(pk=consent.pk).exists()


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


def test_a_consent_with_sessions_cannot_be_deleted_alone_even_by_a_superuser(world, admin_client):
    consent = world.session_a.consent
    r = admin_client.post(f"/admin/tutoring/consent/{consent.pk}/delete/", {"post": "yes"})
    assert r.status_code == 200 and "protected" in r.content.decode()
    assert Consent.objects.filter(pk=consent.pk).exists()


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
