import pytest

from tests.factories import ReadingFactory


@pytest.mark.parametrize("model", ["user", "course", "enrollment", "consent", "learnersession"])
def test_changelists_render_with_filters_and_search(world, admin_client, model):
    r = admin_client.get(f"/admin/tutoring/{model}/?q=a")
    assert r.status_code == 200


def test_label_review_in_admin(world, admin_client, admin_user):
    reading = ReadingFactory(session=world.session_a, sequence=1, face_crop=b"png")
    r = admin_client.get("/admin/emotion/reading/?review=todo")
    assert r.status_code == 200 and f"{reading.pk}" in r.content.decode()
    r = admin_client.post(
        f"/admin/emotion/reading/{reading.pk}/change/",
        # with the (empty, read-only) reviews inline's management form, as the page sends it
        {"reviewed_label": "happy", "reviews-TOTAL_FORMS": "0", "reviews-INITIAL_FORMS": "0"},
    )
    assert r.status_code == 302
    reading.refresh_from_db()
    assert reading.reviewed_label == "happy" and reading.reviewed_by == admin_user
    assert admin_client.get("/admin/emotion/reading/?review=disagree").status_code == 200
