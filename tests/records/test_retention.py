from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from emotion.models import Reading
from records.tasks import purge_expired_readings
from tests.factories import LearnerSessionFactory, ReadingFactory
from tutoring.models import LearnerSession


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
    assert purge_expired_readings() == {"readings": {}, "sessions": {}}


def test_purge_is_scheduled(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["purge-expired-readings"]
    assert entry["task"] == "tutoring.tasks.purge_expired_readings"


@pytest.mark.parametrize("how", ["command", "task"])
def test_ended_sessions_past_retention_are_deleted_active_ones_never(world, how):
    """A session's row (with the browser's client_info) goes retention_days after it ends."""
    now = timezone.now()
    consent = world.session_a.consent

    def session(started_days, ended_days=None, **kw):
        s = LearnerSessionFactory(
            learner=world.learner_a,
            course=world.course,
            consent=consent,
            started_at=now - timedelta(days=started_days),
            client_info={"user_agent": "Firefox"},
            **kw,
        )
        if ended_days is not None:
            s.status, s.ended_at = "ended", now - timedelta(days=ended_days)
            s.save()
        return s

    expired = session(45, ended_days=31)
    ReadingFactory(session=expired, sequence=0, captured_at=now - timedelta(days=29))
    recent = session(45, ended_days=29)  # ended 29 days ago: kept a day longer
    kept_reading = ReadingFactory(session=recent, sequence=0, captured_at=now - timedelta(days=29))
    still_open = session(400)  # never ended (e.g. an abandoned tab): not deleted here
    other = LearnerSessionFactory(
        learner=world.learner_a,
        course=world.other_course,  # retention 30 days too, ended 31 days ago
        started_at=now - timedelta(days=31),
    )
    LearnerSession.objects.filter(pk=other.pk).update(
        status="ended", ended_at=now - timedelta(days=31)
    )
    world.other_course.retention_days = 60
    world.other_course.save()

    if how == "command":
        call_command("purge_readings")
        result = None
    else:
        result = purge_expired_readings.delay().get(timeout=10)

    left = set(LearnerSession.objects.values_list("pk", flat=True))
    assert expired.pk not in left
    assert {recent.pk, still_open.pk, other.pk, world.session_a.pk, world.session_b.pk} <= left
    assert not Reading.objects.filter(session_id=expired.pk).exists()
    assert Reading.objects.filter(pk=kept_reading.pk).exists()
    if result is not None:
        assert result == {"readings": {}, "sessions": {str(world.course.pk): 1}}
