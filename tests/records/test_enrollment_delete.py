"""Removing a learner from a course (an admin's delete of the enrollment) ends their open
sessions there, revokes their consent and discards frames still waiting, through
``services.enrollment_delete``; enrolling them again asks for consent again."""

import pytest
from django.core.exceptions import PermissionDenied

from emotion.models import Reading
from emotion.services import SessionClosed, session_check_ingest
from records import services
from tests.factories import ReadingFactory
from tests.tutoring.conftest import ended_broadcasts
from tutoring import services as tutoring_services
from tutoring.models import Consent, Enrollment, LearnerSession


@pytest.fixture
def pending(world):
    """A frame of learner_a's open session accepted but not analysed yet."""
    return ReadingFactory(
        session=world.session_a,
        sequence=0,
        analysed_at=None,
        probs=None,
        label=None,
        confidence=None,
    )


def assert_removed(world, sent, pending):
    """learner_a is out of the course and nothing more is taken; learner_b is untouched."""
    s = LearnerSession.objects.get(pk=world.session_a.pk)
    assert s.status == "ended" and s.end_reason == "unenrolled"
    assert ended_broadcasts(sent, world.session_a) == {
        (f"course-{world.course.pk}", "unenrolled"),
        (f"session-{world.session_a.pk}", "unenrolled"),
    }
    consents = Consent.objects.filter(learner=world.learner_a, course=world.course)
    assert consents.count() == 1 and not consents.filter(revoked_at__isnull=True).exists()
    pending.refresh_from_db()
    assert pending.analysed_at is not None and pending.error == "consent_revoked"
    with pytest.raises(SessionClosed):
        session_check_ingest(session=s)
    assert not Enrollment.objects.filter(learner=world.learner_a, course=world.course).exists()
    # the other learner goes on
    assert LearnerSession.objects.get(pk=world.session_b.pk).status == "active"
    assert Consent.objects.filter(
        learner=world.learner_b, course=world.course, revoked_at__isnull=True
    ).exists()
    assert ended_broadcasts(sent, world.session_b) == set()


def assert_enrolling_again_asks_for_consent(world):
    tutoring_services.course_enroll(course=world.course, learner=world.learner_a)
    with pytest.raises(PermissionDenied, match="consent"):
        tutoring_services.session_start(learner=world.learner_a, course=world.course)


def enrollment_of(world):
    return Enrollment.objects.get(learner=world.learner_a, course=world.course)


def test_service_ends_sessions_revokes_consent_and_discards_pending_frames(
    world, sent, pending, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        result = services.enrollment_delete(enrollment=enrollment_of(world))
    assert result == {"sessions_ended": 1, "consents_revoked": 1}
    assert_removed(world, sent, pending)
    assert Reading.objects.filter(pk=pending.pk).exists()  # past data stays (retention/erase)
    assert_enrolling_again_asks_for_consent(world)


def test_an_upload_after_removal_is_refused_even_on_a_session_started_late(world, sent):
    """A session started in the same instant as the removal holds a revoked consent."""
    consent = world.session_a.consent
    services.enrollment_delete(enrollment=enrollment_of(world))
    late = LearnerSession.objects.create(
        learner=world.learner_a,
        course=world.course,
        consent=consent,
        started_at=world.session_a.started_at,
    )
    with pytest.raises(PermissionDenied, match="revoked"):
        session_check_ingest(session=late)


def test_admin_delete_goes_through_the_service(
    world, admin_client, sent, pending, django_capture_on_commit_callbacks
):
    pk = enrollment_of(world).pk
    with django_capture_on_commit_callbacks(execute=True):
        r = admin_client.post(f"/admin/tutoring/enrollment/{pk}/delete/", {"post": "yes"})
    assert r.status_code == 302
    assert_removed(world, sent, pending)
    assert_enrolling_again_asks_for_consent(world)


def test_admin_bulk_delete_goes_through_the_service(
    world, admin_client, sent, pending, django_capture_on_commit_callbacks
):
    pk = enrollment_of(world).pk
    with django_capture_on_commit_callbacks(execute=True):
        r = admin_client.post(
            "/admin/tutoring/enrollment/",
            {"action": "delete_selected", "_selected_action": [pk], "post": "yes"},
        )
    assert r.status_code == 302
    assert_removed(world, sent, pending)


def course_change_data(admin_client, course, delete_learner=None) -> dict:
    """The course admin page's form as loaded, with one enrollment row ticked for delete."""
    r = admin_client.get(f"/admin/tutoring/course/{course.pk}/change/")
    data = {}
    for k, v in r.context["adminform"].form.initial.items():
        if v is None:
            continue
        data[k] = [getattr(x, "pk", x) for x in v] if isinstance(v, list) else v
    (inline,) = r.context["inline_admin_formsets"]
    fs = inline.formset
    data[f"{fs.prefix}-TOTAL_FORMS"] = str(len(fs.forms))
    data[f"{fs.prefix}-INITIAL_FORMS"] = str(fs.initial_form_count())
    for i, f in enumerate(fs.forms):
        data[f"{fs.prefix}-{i}-id"] = f.instance.pk
        data[f"{fs.prefix}-{i}-course"] = course.pk
        data[f"{fs.prefix}-{i}-learner"] = f.instance.learner_id
        if f.instance.learner_id == getattr(delete_learner, "pk", None):
            data[f"{fs.prefix}-{i}-DELETE"] = "on"
    return data


def test_deleting_the_row_on_the_course_page_goes_through_the_service(
    world, admin_client, sent, pending, django_capture_on_commit_callbacks
):
    data = course_change_data(admin_client, world.course, delete_learner=world.learner_a)
    with django_capture_on_commit_callbacks(execute=True):
        r = admin_client.post(f"/admin/tutoring/course/{world.course.pk}/change/", data)
    assert r.status_code == 302, r.context and r.context["errors"]
    assert_removed(world, sent, pending)


def test_an_enrollment_cannot_be_moved_to_another_learner(world, admin_client, sent):
    """Re-pointing a row would remove learner_a without the service: the fields are fixed."""
    from tests.factories import UserFactory

    other = UserFactory(username="learner_z")
    e = enrollment_of(world)
    r = admin_client.post(
        f"/admin/tutoring/enrollment/{e.pk}/change/",
        {"learner": other.pk, "course": world.other_course.pk},
    )
    assert r.status_code == 302
    e.refresh_from_db()
    assert (e.learner_id, e.course_id) == (world.learner_a.pk, world.course.pk)
    # nor on the course page
    data = course_change_data(admin_client, world.course)
    for k, v in list(data.items()):
        if k.endswith("-learner") and v == world.learner_a.pk:
            data[k] = other.pk
    r = admin_client.post(f"/admin/tutoring/course/{world.course.pk}/change/", data)
    assert r.status_code == 302, r.context and r.context["errors"]
    assert Enrollment.objects.filter(learner=world.learner_a, course=world.course).exists()
    assert not Enrollment.objects.filter(learner=other).exists()
    assert LearnerSession.objects.get(pk=world.session_a.pk).status == "active"
