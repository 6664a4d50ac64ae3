"""Erasure, deletes and the retention purge also drop the sessions' cached live summaries
(``emotion.live``: learner's name, engagement, emotion mix, kept an hour)."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone

from emotion.live import broadcast_after_batch
from records import services
from tests.factories import ReadingFactory
from tutoring.models import LearnerSession


def key(session) -> str:
    return f"live:session:{session.pk}"


@pytest.fixture
def cached(world):
    """Both open sessions analysed a frame: their live summaries are in the cache."""
    readings = [ReadingFactory(session=s, sequence=0) for s in (world.session_a, world.session_b)]
    broadcast_after_batch(readings)
    for s in (world.session_a, world.session_b):
        summary = cache.get(key(s))
        assert summary and summary["learner_name"] == s.learner.username
    yield world
    cache.delete_many([key(world.session_a), key(world.session_b)])


def test_erasing_a_learners_data_drops_their_cached_summary(
    cached, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.learner_data_erase(learner=cached.learner_a)
    assert cache.get(key(cached.session_a)) is None
    assert cache.get(key(cached.session_b)) is not None  # someone else's


def test_erasing_through_the_admin_action_drops_it(
    cached, admin_client, django_capture_on_commit_callbacks
):
    form = {
        "action": "erase_learner_data",
        "_selected_action": [cached.learner_a.pk],
        "confirm": "yes",
    }
    with django_capture_on_commit_callbacks(execute=True):
        assert admin_client.post("/admin/tutoring/user/", form).status_code == 302
    assert cache.get(key(cached.session_a)) is None
    assert cache.get(key(cached.session_b)) is not None


def test_the_retention_purge_drops_the_purged_sessions_summaries(
    cached, django_capture_on_commit_callbacks
):
    long_ago = timezone.now() - timedelta(days=cached.course.retention_days + 1)
    LearnerSession.objects.filter(pk=cached.session_a.pk).update(status="ended", ended_at=long_ago)
    with django_capture_on_commit_callbacks(execute=True):  # the purge commits per course
        call_command("purge_readings")
    assert not LearnerSession.objects.filter(pk=cached.session_a.pk).exists()
    assert cache.get(key(cached.session_a)) is None
    assert cache.get(key(cached.session_b)) is not None  # open: not purged


@pytest.mark.parametrize("what", ["session", "course"])
def test_deleting_a_session_or_course_drops_it(cached, what, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        if what == "session":
            services.session_delete(session=cached.session_a)
        else:
            services.course_delete(course=cached.course)
    assert cache.get(key(cached.session_a)) is None
    assert (cache.get(key(cached.session_b)) is None) == (what == "course")


def test_a_cache_that_is_down_does_not_undo_the_erasure(
    cached, monkeypatch, django_capture_on_commit_callbacks
):
    def down(session_ids):
        raise ConnectionError("cache away")

    monkeypatch.setattr("emotion.live.session_summaries_forget", down)
    with django_capture_on_commit_callbacks(execute=True):
        result = services.learner_data_erase(learner=cached.learner_a)
    assert result["sessions"] == 1
    assert not LearnerSession.objects.filter(learner=cached.learner_a).exists()
