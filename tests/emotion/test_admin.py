"""Label review in the admin: only expressions the learner agreed to have estimated are
offered for, or accept, a human label; nothing the pipeline recorded is editable."""

import pytest

from tests.factories import LearnerSessionFactory, ReadingFactory, UserFactory, enroll


@pytest.fixture
def sessions(classroom):
    """The classroom's emotion session, and an engagement-only learner's session."""
    quiet = UserFactory(username="quiet")
    enroll(classroom.course, quiet, emotion=False)
    engagement_only = LearnerSessionFactory(
        learner=quiet, course=classroom.course, consent=quiet.consents.get()
    )
    assert classroom.session.emotion_enabled and not engagement_only.emotion_enabled
    return classroom.session, engagement_only


def test_review_queue_holds_only_estimated_expressions(sessions, admin_client):
    emotion, engagement_only = sessions
    estimated = ReadingFactory(session=emotion)
    not_estimated = ReadingFactory(session=engagement_only)
    assert estimated.label and not_estimated.label is None and not_estimated.face_found
    r = admin_client.get("/admin/emotion/reading/?review=todo")
    ids = {row.pk for row in r.context["cl"].result_list}
    assert ids == {estimated.pk}


def test_a_reading_without_an_estimated_expression_cannot_be_labelled(sessions, admin_client):
    _, engagement_only = sessions
    reading = ReadingFactory(session=engagement_only)
    r = admin_client.post(
        f"/admin/emotion/reading/{reading.pk}/change/", {"reviewed_label": "happy"}
    )
    assert r.status_code == 200 and "did not agree to having it labelled" in r.content.decode()
    reading.refresh_from_db()
    assert reading.reviewed_label is None and reading.reviewed_by is None


def test_the_changelist_refuses_the_label_too(sessions, admin_client):
    emotion, engagement_only = sessions
    ok, refused = ReadingFactory(session=emotion), ReadingFactory(session=engagement_only)
    data = {
        "form-TOTAL_FORMS": "2",
        "form-INITIAL_FORMS": "2",
        "form-0-id": str(ok.pk),
        "form-0-reviewed_label": "sad",
        "form-1-id": str(refused.pk),
        "form-1-reviewed_label": "sad",
        "_save": "Save",
    }
    r = admin_client.post("/admin/emotion/reading/?o=1", data)
    assert r.status_code == 200 and "did not agree to having it labelled" in r.content.decode()
    refused.refresh_from_db()
    assert refused.reviewed_label is None


def test_only_the_reviewed_label_is_editable(sessions, admin_client):
    emotion, _ = sessions
    reading = ReadingFactory(session=emotion, error="", lost_runs=0)
    form = admin_client.get(f"/admin/emotion/reading/{reading.pk}/change/").context["adminform"]
    assert list(form.form.fields) == ["reviewed_label"]
