"""readings_analyse under overlapping deliveries and withdrawn consent; the re-queue's backoff;
sequence numbers at their limit."""

from datetime import timedelta

import pytest
from django.utils import timezone

from emotion.framestore import get_frame_store
from emotion.models import Reading
from emotion.services import (
    MAX_SEQUENCE,
    IncomingFrame,
    frames_accept,
    readings_analyse,
    readings_requeue_stale,
)
from tutoring.services import consent_revoke


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if the batch loads the CNN."""

    def get_predictor():
        raise AssertionError("the model must not be loaded for this batch")

    monkeypatch.setattr("emotion.inference.get_predictor", get_predictor)


def accept(session, *frames) -> list[int]:
    """Pending readings for ``frames``, not queued (the test runs the batch itself)."""
    return frames_accept(
        session=session, enqueue=False, frames=[IncomingFrame(f) for f in frames]
    ).reading_ids


@pytest.mark.django_db(transaction=True)
def test_a_late_overlapping_delivery_does_not_overwrite_the_first_result(
    classroom, face_frames, monkeypatch
):
    """Delivery B reads the pending rows, then delivery A analyses them, commits and deletes
    the frames before B fetches the bytes: B finds no frames and must not record its
    'frame_expired' over A's real result."""
    ids = accept(classroom.session, face_frames[0])
    store = get_frame_store()
    real_get_many = type(store).get_many
    calls = []

    def get_many(self, reading_ids):
        calls.append(list(reading_ids))
        if len(calls) == 1:  # B has loaded its rows; A runs to the end now
            assert readings_analyse(reading_ids=ids)["analysed"] == 1
        return real_get_many(self, reading_ids)

    monkeypatch.setattr(type(store), "get_many", get_many)
    stats = readings_analyse(reading_ids=ids)  # B
    assert len(calls) == 2
    assert stats["analysed"] == 0 and stats["skipped"] == 1
    r = Reading.objects.get(pk=ids[0])
    assert r.error == "" and r.face_found and r.label is not None


@pytest.mark.parametrize(
    "store", ["memory", pytest.param("redis", marks=pytest.mark.redis)], ids=str
)
@pytest.mark.django_db(transaction=True)
def test_revoking_consent_settles_pending_frames_and_deletes_their_bytes_at_once(
    classroom, face_frames, no_model, store
):
    ids = accept(classroom.session, face_frames[0], face_frames[1])
    frames = get_frame_store()
    assert type(frames).__name__.lower().startswith(store)
    assert set(frames.get_many(ids)) == set(ids)
    consent_revoke(learner=classroom.learner, course=classroom.course)
    # no batch has run: the bytes are gone now, not after the TTL or the queued task
    assert frames.get_many(ids) == {}
    for r in Reading.objects.filter(pk__in=ids):
        assert r.analysed_at and r.error == "consent_revoked"
        assert r.label is None and r.probs is None and not r.face_found and r.face_crop is None
    # the queued batch, when it comes, finds nothing left to do and loads no model
    assert readings_analyse(reading_ids=ids) == {"analysed": 0, "skipped": 2}


@pytest.mark.django_db(transaction=True)
def test_giving_other_consent_settles_the_old_consents_pending_frames(
    classroom, face_frames, no_model
):
    from tutoring.services import consent_grant

    ids = accept(classroom.session, face_frames[0])
    consent_grant(learner=classroom.learner, course=classroom.course, emotion=False)
    assert get_frame_store().get_many(ids) == {}
    assert Reading.objects.get(pk=ids[0]).error == "consent_revoked"


@pytest.mark.django_db(transaction=True)
def test_periodic_requeue_backs_off_instead_of_queueing_the_backlog_every_minute(
    classroom, face_frames, monkeypatch
):
    queued: list[list[int]] = []
    monkeypatch.setattr(
        "emotion.services.readings_enqueue", lambda *, reading_ids: queued.append(reading_ids)
    )
    ids = accept(classroom.session, face_frames[0])
    t0 = timezone.now()
    Reading.objects.filter(pk__in=ids).update(received_at=t0 - timedelta(seconds=90))
    clock = {"now": t0}
    monkeypatch.setattr("emotion.services.timezone.now", lambda: clock["now"])

    def beat(after_s: float) -> int:
        clock["now"] = t0 + timedelta(seconds=after_s)
        return readings_requeue_stale(older_than_s=60)

    # waited 90 s: queued; then again only after waiting as long again (90 s + 90 s…)
    assert [beat(0), beat(60), beat(89), beat(91), beat(180), beat(270), beat(450)] == [
        1,
        0,
        0,
        1,
        0,
        0,
        1,
    ]
    assert queued == [ids, ids, ids]
    # start-up (the in-process queue is lost): everything pending, no backoff
    assert readings_requeue_stale(older_than_s=0, backoff=False) == 1


@pytest.mark.django_db
def test_auto_numbered_frame_past_the_largest_sequence_is_rejected_with_a_reason(
    classroom, face_frames
):
    first = frames_accept(
        session=classroom.session,
        enqueue=False,
        frames=[IncomingFrame(face_frames[0], sequence=MAX_SEQUENCE)],
    )
    assert first.reading_ids
    result = frames_accept(
        session=classroom.session, enqueue=False, frames=[IncomingFrame(face_frames[1])]
    )
    assert result.accepted == []
    assert [r["code"] for r in result.rejected] == ["bad_sequence"]
    assert "used up" in result.rejected[0]["reason"]
    assert Reading.objects.filter(session=classroom.session).count() == 1


@pytest.mark.django_db(transaction=True)
def test_no_face_crop_is_kept_for_a_learner_who_agreed_to_an_older_policy(classroom, face_frames):
    """Frames accepted just before the course turned keep_face_crops on are analysed after:
    the learner never agreed to thumbnails, so none is kept."""
    from tutoring.models import Course

    ids = accept(classroom.session, face_frames[0])
    Course.objects.filter(pk=classroom.course.pk).update(
        keep_face_crops=True, consent_policy_version="2027-01"
    )
    assert readings_analyse(reading_ids=ids)["faces"] == 1
    assert Reading.objects.get(pk=ids[0]).face_crop is None


@pytest.mark.django_db(transaction=True)
def test_a_batch_whose_frames_all_expired_does_not_load_the_model(classroom, face_frames, no_model):
    ids = accept(classroom.session, face_frames[0])
    get_frame_store().delete_many(ids)
    assert readings_analyse(reading_ids=ids)["analysed"] == 1
    assert Reading.objects.get(pk=ids[0]).error == "frame_expired"


@pytest.mark.django_db(transaction=True)
def test_consent_revoked_while_the_model_runs_drops_the_results(
    classroom, face_frames, monkeypatch
):
    ids = accept(classroom.session, face_frames[0])
    store = get_frame_store()
    real_get_many = type(store).get_many

    def get_many_then_revoke(self, reading_ids):
        frames = real_get_many(self, reading_ids)
        consent_revoke(learner=classroom.learner, course=classroom.course)
        return frames

    monkeypatch.setattr(type(store), "get_many", get_many_then_revoke)
    stats = readings_analyse(reading_ids=ids)
    # the revoke settled the reading while the model ran: the batch writes nothing over it
    assert stats["analysed"] == 0 and stats["skipped"] == 1
    r = Reading.objects.get(pk=ids[0])
    assert r.error == "consent_revoked"
    assert not r.face_found and r.box is None and r.probs is None and r.label is None


@pytest.mark.django_db(transaction=True)
def test_erasing_a_learners_data_deletes_the_bytes_of_frames_still_waiting(
    classroom, face_frames, no_model
):
    from records.services import learner_data_erase

    ids = accept(classroom.session, face_frames[0])
    other = accept(
        type(classroom.session).objects.create(
            learner=classroom.other_learner,
            course=classroom.course,
            consent=classroom.other_learner.consents.get(),
            started_at=timezone.now(),
        ),
        face_frames[1],
    )
    learner_data_erase(learner=classroom.learner)
    assert get_frame_store().get_many(ids + other) == {other[0]: face_frames[1]}
    assert not Reading.objects.filter(pk__in=ids).exists()
    assert readings_analyse(reading_ids=ids) == {"analysed": 0, "skipped": 1}


@pytest.fixture
def poisoned_model(monkeypatch):
    """The real model, except that any batch holding an all-black frame raises (as a frame
    that breaks the detector did): stands in for a frame-caused inference failure."""
    import numpy as np

    from emotion.inference import get_predictor

    real = get_predictor()

    class Poisoned:
        sha256 = real.sha256

        def describe(self):
            return real.describe()

        def predict_frames(self, images, classify, timings=None):
            if any(not np.any(img) for img in images):
                raise RuntimeError("this frame breaks the model")
            return real.predict_frames(images, classify, timings)

    monkeypatch.setattr("emotion.inference.get_predictor", lambda: Poisoned())


def black_jpeg() -> bytes:
    import cv2
    import numpy as np

    return cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1].tobytes()


@pytest.mark.django_db(transaction=True)
def test_a_frame_that_breaks_the_model_fails_alone_not_the_batch(
    classroom, face_frames, poisoned_model
):
    ids = accept(classroom.session, face_frames[0], black_jpeg(), face_frames[1])
    stats = readings_analyse(reading_ids=ids)
    assert stats["analysed"] == 3 and stats["faces"] == 2
    good1, bad, good2 = (Reading.objects.get(pk=i) for i in ids)
    assert bad.error == "inference_failed" and bad.analysed_at and not bad.face_found
    assert good1.error == good2.error == "" and good1.label and good2.label
    assert get_frame_store().get_many(ids) == {}


@pytest.mark.django_db(transaction=True)
def test_when_every_frame_fails_the_batch_raises_and_keeps_them_for_a_retry(
    classroom, poisoned_model
):
    ids = accept(classroom.session, black_jpeg(), black_jpeg())
    with pytest.raises(RuntimeError, match="breaks the model"):
        readings_analyse(reading_ids=ids)
    assert not Reading.objects.filter(pk__in=ids, analysed_at__isnull=False).exists()
    assert set(get_frame_store().get_many(ids)) == set(ids)  # still there for the retry


@pytest.mark.django_db(transaction=True)
def test_a_revoke_racing_an_upload_still_deletes_that_uploads_bytes(
    classroom, face_frames, no_model, monkeypatch
):
    """The upload holds the session's row lock and has stored its bytes, not yet committed,
    when the learner revokes: the revoke waits for the upload, then sees and deletes them."""
    import threading
    import time

    from django.db import connection

    store = get_frame_store()
    real_put = type(store).put
    stored, release = threading.Event(), threading.Event()

    def put_then_wait(self, reading_id, data, ttl):
        real_put(self, reading_id, data, ttl)
        stored.set()
        release.wait(10)

    monkeypatch.setattr(type(store), "put", put_then_wait)
    ids, errors = [], []

    def run(fn):
        try:
            fn()
        except Exception as e:  # reported below: a thread's exception would be lost
            errors.append(e)
        finally:
            connection.close()

    upload = threading.Thread(
        target=run, args=(lambda: ids.extend(accept(classroom.session, face_frames[0])),)
    )
    upload.start()
    assert stored.wait(10)
    revoke = threading.Thread(
        target=run,
        args=(lambda: consent_revoke(learner=classroom.learner, course=classroom.course),),
    )
    revoke.start()
    time.sleep(0.5)  # the revoke is waiting for the session's row lock now
    release.set()
    upload.join(10)
    revoke.join(10)
    assert not errors and len(ids) == 1
    assert store.get_many(ids) == {}
    assert Reading.objects.get(pk=ids[0]).error == "consent_revoked"


@pytest.mark.django_db(transaction=True)
def test_the_task_time_limit_is_not_taken_for_a_bad_frame(classroom, face_frames, monkeypatch):
    """Celery's soft time limit raises SoftTimeLimitExceeded (an Exception) once, inside the
    model call: it must end the task, not start a frame-by-frame retry in the little time
    left before the hard limit kills the worker."""
    from celery.exceptions import SoftTimeLimitExceeded

    from emotion.inference import get_predictor

    real, calls = get_predictor(), []

    class OutOfTimeOnce:
        sha256 = real.sha256

        def describe(self):
            return real.describe()

        def predict_frames(self, images, classify, timings=None):
            calls.append(len(images))
            if len(calls) == 1:
                raise SoftTimeLimitExceeded()
            return real.predict_frames(images, classify, timings)

    monkeypatch.setattr("emotion.inference.get_predictor", lambda: OutOfTimeOnce())
    ids = accept(classroom.session, face_frames[0], face_frames[1])
    with pytest.raises(SoftTimeLimitExceeded):
        readings_analyse(reading_ids=ids)
    assert calls == [2]  # no frame-by-frame retry
    assert not Reading.objects.filter(pk__in=ids, analysed_at__isnull=False).exists()
