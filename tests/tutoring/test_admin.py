import pytest
from django.apps import apps
from django.contrib import admin

from tests.factories import ReadingFactory


def test_every_model_is_registered():
    for app in ("tutoring", "emotion"):
        for model in apps.get_app_config(app).get_models():
            assert admin.site.is_registered(model), model


@pytest.mark.parametrize("model", ["user", "course", "enrollment", "consent", "learnersession"])
def test_changelists_render_with_filters_and_search(world, admin_client, model):
    r = admin_client.get(f"/admin/tutoring/{model}/?q=a")
    assert r.status_code == 200


def test_label_review_in_admin(world, admin_client, admin_user):
    reading = ReadingFactory(session=world.session_a, sequence=1)
    r = admin_client.get("/admin/emotion/reading/?review=todo")
    assert r.status_code == 200 and f"{reading.pk}" in r.content.decode()
    r = admin_client.post(
        f"/admin/emotion/reading/{reading.pk}/change/", {"reviewed_label": "happy"}
    )
    assert r.status_code == 302
    reading.refresh_from_db()
    assert reading.reviewed_label == "happy" and reading.reviewed_by == admin_user
    assert admin_client.get("/admin/emotion/reading/?review=disagree").status_code == 200


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
