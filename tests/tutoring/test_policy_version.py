"""A course's data policy that widens gets a new version: open sessions end, and consent given
under the older version neither starts sessions nor lets frames in until given again."""

from datetime import UTC

import pytest
from django.contrib.messages.storage.fallback import FallbackStorage
from django.core.exceptions import PermissionDenied
from django.test import RequestFactory

from emotion.services import IncomingFrame, frames_accept
from tests.factories import (
    AdminFactory,
    CourseFactory,
    InstructorFactory,
    LearnerSessionFactory,
    UserFactory,
    enroll,
)
from tutoring import services
from tutoring.models import Course, LearnerSession


@pytest.fixture
def learner_in_course(db):
    course = CourseFactory(keep_face_crops=False, retention_days=30)
    learner = UserFactory()
    enroll(course, learner)
    session = LearnerSessionFactory(learner=learner, course=course, consent=learner.consents.get())
    return course, learner, session


def _edited(course: Course, **fields) -> Course:
    """The admin's form hands the service a fresh instance with the edited fields."""
    c = Course.objects.get(pk=course.pk)
    for k, v in fields.items():
        setattr(c, k, v)
    return c


@pytest.mark.django_db
def test_widening_the_policy_stamps_a_version_ends_open_sessions_and_asks_for_consent_again(
    learner_in_course, django_capture_on_commit_callbacks
):
    course, learner, session = learner_in_course
    old_version = course.consent_policy_version
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        widened = services.course_update(course=_edited(course, keep_face_crops=True))
    assert widened == ["face thumbnails kept for label review"]
    course.refresh_from_db()
    assert course.consent_policy_version != old_version
    session.refresh_from_db()
    assert session.status == LearnerSession.Status.ENDED
    assert session.end_reason == "policy_changed"
    assert callbacks  # the dashboard and the stream are told after the commit
    with pytest.raises(PermissionDenied, match="data policy changed"):
        services.session_start(learner=learner, course=course)
    # consenting again under the current version lets the learner record again
    services.consent_grant(learner=learner, course=course)
    assert services.session_start(learner=learner, course=course).is_open


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fields",
    [{"retention_days": 7}, {"emotion_inference_enabled": False}, {"title": "Renamed"}],
)
def test_narrowing_or_neutral_edits_keep_the_version_and_the_sessions(learner_in_course, fields):
    course, learner, session = learner_in_course
    old_version = course.consent_policy_version
    assert services.course_update(course=_edited(course, **fields)) == []
    course.refresh_from_db()
    assert course.consent_policy_version == old_version
    session.refresh_from_db()
    assert session.is_open


@pytest.mark.django_db
def test_a_version_changed_by_hand_also_ends_the_open_sessions(learner_in_course):
    course, learner, session = learner_in_course
    services.course_update(course=_edited(course, consent_policy_version="2027-01"))
    session.refresh_from_db()
    assert session.end_reason == "policy_changed"
    course.refresh_from_db()
    assert course.consent_policy_version == "2027-01"


@pytest.mark.django_db
def test_frames_are_refused_under_consent_to_an_older_policy(learner_in_course):
    """Defence in depth: a session still open under an older version takes no frames."""
    course, learner, session = learner_in_course
    Course.objects.filter(pk=course.pk).update(consent_policy_version="2027-01")
    with pytest.raises(PermissionDenied, match="data policy changed"):
        frames_accept(session=session, enqueue=False, frames=[IncomingFrame(b"x")])


@pytest.mark.django_db
def test_course_page_asks_for_consent_again_and_offers_to_revoke_the_old_one(
    client, learner_in_course
):
    course, learner, session = learner_in_course
    services.course_update(course=_edited(course, retention_days=90))
    client.force_login(learner)
    page = client.get(f"/learn/courses/{course.pk}/").content.decode()
    assert "data policy has changed" in page
    assert "Give consent" in page and "Revoke my earlier consent" in page
    assert "Start a session" not in page


@pytest.mark.django_db
def test_admin_edit_goes_through_the_service_and_warns(learner_in_course):
    from django.contrib import admin

    course, learner, session = learner_in_course
    request = RequestFactory().post("/admin/")
    request.user = AdminFactory(is_staff=True, is_superuser=True)
    request.session = {}
    request._messages = FallbackStorage(request)
    model_admin = admin.site._registry[Course]
    edited = _edited(course, emotion_inference_enabled=True, keep_face_crops=True)
    Course.objects.filter(pk=course.pk).update(emotion_inference_enabled=False)
    model_admin.save_model(request, edited, form=None, change=True)
    texts = [str(m) for m in request._messages]
    assert any("must give consent again" in t for t in texts)
    session.refresh_from_db()
    assert session.end_reason == "policy_changed"


@pytest.mark.django_db
def test_api_and_home_page_tell_an_outdated_consent_from_a_current_one(client, learner_in_course):
    from rest_framework.test import APIClient

    course, learner, session = learner_in_course
    api = APIClient()
    api.force_authenticate(learner)
    assert api.get(f"/api/courses/{course.pk}/consent/").json()["current"] is True
    client.force_login(learner)
    assert "Consent given" in client.get("/learn/").content.decode()
    services.course_update(course=_edited(course, keep_face_crops=True))
    consent = api.get(f"/api/courses/{course.pk}/consent/").json()
    assert consent["active"] is True and consent["current"] is False
    course_json = api.get(f"/api/courses/{course.pk}/").json()
    assert course_json["my_consent"]["current"] is False
    home = client.get("/learn/").content.decode()
    assert "data policy changed" in home and "Consent given" not in home


@pytest.mark.django_db
def test_two_widening_edits_in_the_same_second_get_different_versions(
    learner_in_course, monkeypatch
):
    from datetime import datetime

    course, learner, _ = learner_in_course
    frozen = datetime(2026, 11, 25, 9, 30, 0, tzinfo=UTC)
    monkeypatch.setattr("tutoring.services.timezone.now", lambda: frozen)
    services.course_update(course=_edited(course, keep_face_crops=True))
    first = Course.objects.get(pk=course.pk).consent_policy_version
    services.consent_grant(learner=learner, course=course)  # consent to the first widening
    services.course_update(course=_edited(course, retention_days=90))
    second = Course.objects.get(pk=course.pk).consent_policy_version
    assert (first, second) == ("2026-11-25.093000", "2026-11-25.093000-2")
    # the consent to the first widening does not cover the second
    consent = learner.consents.get(revoked_at__isnull=True)
    assert not services.consent_current(consent=consent, course=Course.objects.get(pk=course.pk))


@pytest.mark.django_db
def test_a_version_used_before_cannot_be_typed_back_in(learner_in_course, admin_client):
    from django.core.exceptions import ValidationError

    course, learner, _ = learner_in_course
    old = course.consent_policy_version  # the learner consented under it
    services.course_update(course=_edited(course, keep_face_crops=True))
    new = Course.objects.get(pk=course.pk).consent_policy_version
    with pytest.raises(ValidationError, match="was used before"):
        services.course_update(course=_edited(course, consent_policy_version=old))
    assert Course.objects.get(pk=course.pk).consent_policy_version == new
    # the admin's form says why instead of saving
    form = admin_client.get(f"/admin/tutoring/course/{course.pk}/change/").context["adminform"]
    data = {k: v for k, v in form.form.initial.items() if v is not None}
    data.update(
        {
            "instructors": [InstructorFactory().pk],
            "consent_policy_version": old,
            "enrollments-TOTAL_FORMS": "0",
            "enrollments-INITIAL_FORMS": "0",
        }
    )
    r = admin_client.post(f"/admin/tutoring/course/{course.pk}/change/", data)
    assert r.status_code == 200
    assert list(r.context["adminform"].form.errors) == ["consent_policy_version"]
    assert "was used before in this course" in r.content.decode()
    assert Course.objects.get(pk=course.pk).consent_policy_version == new
    # a version the course never had is fine
    data["consent_policy_version"] = "2027-01"
    r = admin_client.post(f"/admin/tutoring/course/{course.pk}/change/", data)
    assert r.status_code == 302, r.context["adminform"].form.errors
    assert Course.objects.get(pk=course.pk).consent_policy_version == "2027-01"


@pytest.mark.django_db
def test_start_after_the_policy_changed_says_why_on_the_course_page(learner_in_course, client):
    """The course page was loaded before an admin widened the policy: Start explains, on the
    course page where consent can be given again, instead of a bare 403."""
    course, learner, _ = learner_in_course
    services.course_update(course=_edited(course, keep_face_crops=True))
    client.force_login(learner)
    r = client.post(f"/learn/courses/{course.pk}/start/", follow=True)
    assert r.redirect_chain == [(f"/learn/courses/{course.pk}/", 302)]
    assert "data policy changed" in r.content.decode()
    assert not LearnerSession.objects.filter(learner=learner, status="active").exists()


@pytest.mark.django_db
def test_allowing_full_pictures_again_widens_the_policy_forbidding_them_does_not(
    learner_in_course,
):
    course, _, _ = learner_in_course
    narrowed = services.course_update(course=_edited(course, allow_full_pictures=False))
    assert narrowed == []
    widened = services.course_update(course=_edited(course, allow_full_pictures=True))
    assert widened == ["full camera pictures sent to the server"]
