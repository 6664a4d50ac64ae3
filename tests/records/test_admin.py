"""The admin of users, courses, enrollments and sessions (registered by records.admin): every
model has one, and a session is a record staff cannot edit. Deletes and the erasure action:
test_erasure.py and test_enrollment_delete.py."""

from django.apps import apps
from django.contrib import admin


def test_every_model_is_registered():
    for app in ("tutoring", "emotion", "records"):
        for model in apps.get_app_config(app).get_models():
            assert admin.site.is_registered(model), model


def test_session_fields_cannot_be_edited_in_admin(world, admin_client):
    """A learner who declined emotion analysis keeps it off, and a session stays in its course
    under its consent, whatever an edit form posts."""
    from tests.factories import ConsentFactory
    from tutoring.models import LearnerSession

    session = world.session_a
    session.emotion_enabled = False
    session.save()
    other_consent = ConsentFactory(learner=world.learner_a, course=world.other_course)
    url = f"/admin/tutoring/learnersession/{session.pk}/change/"
    assert admin_client.get(url).status_code == 200
    before = LearnerSession.objects.filter(pk=session.pk).values().get()
    r = admin_client.post(
        url,
        {
            "learner": world.learner_b.pk,
            "course": world.other_course.pk,
            "consent": other_consent.pk,
            "status": "ended",
            "started_at_0": "2020-01-01",
            "started_at_1": "00:00:00",
            "end_reason": "edited",
            "emotion_enabled": "on",
            "client_info": "{}",
        },
    )
    assert r.status_code == 302
    assert LearnerSession.objects.filter(pk=session.pk).values().get() == before
    # nor can staff make a session without the learner
    assert admin_client.get("/admin/tutoring/learnersession/add/").status_code == 403
    r = admin_client.post(
        "/admin/tutoring/learnersession/add/",
        {
            "learner": world.learner_a.pk,
            "course": world.course.pk,
            "consent": session.consent_id,
            "status": "active",
            "started_at_0": "2026-01-01",
            "started_at_1": "00:00:00",
            "emotion_enabled": "on",
            "client_info": "{}",
        },
    )
    assert r.status_code == 403
    assert LearnerSession.objects.count() == 2
