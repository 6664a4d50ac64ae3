from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from emotion.models import Reading
from tests.factories import LearnerSessionFactory, ReadingFactory
from tutoring.tasks import purge_expired_readings


@pytest.fixture
def aged(world):
    """Readings aged 1, 10 and 40 days in a 30-day course and a 7-day course."""
    world.other_course.retention_days = 7
    world.other_course.save()
    from tests.factories import enroll

    s_other = LearnerSessionFactory(
        learner=world.learner_a,
        course=world.other_course,
        consent=enroll(world.other_course, world.learner_a)
        or world.learner_a.consents.get(course=world.other_course),
    )
    now = timezone.now()
    made = {}
    for session, tag in ((world.session_a, "c30"), (s_other, "c7")):
        for seq, days in enumerate((1, 10, 40)):
            at = now - timedelta(days=days)
            made[(tag, days)] = ReadingFactory(session=session, sequence=seq, captured_at=at).pk
    return made


@pytest.mark.parametrize("how", ["command", "task"])
def test_purge_deletes_exactly_what_retention_says(aged, how):
    if how == "command":
        call_command("purge_readings")
    else:
        purge_expired_readings.delay().get(timeout=10)  # eager in this test: same code path
    left = set(Reading.objects.values_list("pk", flat=True))
    expect_left = {aged[("c30", 1)], aged[("c30", 10)], aged[("c7", 1)]}
    assert left == expect_left
    # idempotent
    assert purge_expired_readings() == {}


def test_purge_is_scheduled(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["purge-expired-readings"]
    assert entry["task"] == "tutoring.tasks.purge_expired_readings"
