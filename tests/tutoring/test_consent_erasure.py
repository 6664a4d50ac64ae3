"""Consent changes keep sessions consistent, and the live dashboard is told; consent records
stay (erasure and deletes: tests/records/test_erasure.py)."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from emotion.services import SessionClosed, session_check_ingest
from tests.factories import UserFactory
from tests.tutoring.conftest import ended_broadcasts
from tutoring import services
from tutoring.models import Consent, LearnerSession
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


def test_course_page_links_to_the_erase_page(world):
    c = browser(world.learner_a)
    assert ERASE_URL in c.get(f"/learn/courses/{world.course.pk}/").content.decode()
    services.consent_revoke(learner=world.learner_a, course=world.course)  # the consent screen
    assert ERASE_URL in c.get(f"/learn/courses/{world.course.pk}/").content.decode()


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


# --- staff: consent history ----------------------------------------------------------------------


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


def test_a_consent_with_sessions_cannot_be_deleted_alone_even_by_a_superuser(world, admin_client):
    consent = world.session_a.consent
    r = admin_client.post(f"/admin/tutoring/consent/{consent.pk}/delete/", {"post": "yes"})
    assert r.status_code == 200 and "protected" in r.content.decode()
    assert Consent.objects.filter(pk=consent.pk).exists()
