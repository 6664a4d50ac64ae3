"""A worker killed in the middle of a batch: after a restart every accepted frame has exactly
one reading (acks_late + reject_on_worker_lost + idempotent task)."""

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from emotion.framestore import get_frame_store
from emotion.models import Reading


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_killed_worker_batch_is_redelivered_and_completed_once(
    classroom, face_frames, worker_factory
):
    slow = worker_factory("slow", INFERENCE_TEST_DELAY_SECONDS=30, CELERY_VISIBILITY_TIMEOUT=3)
    c = APIClient()
    c.force_authenticate(classroom.learner)
    files = [
        SimpleUploadedFile(f"{i}.jpg", d, "image/jpeg") for i, d in enumerate(face_frames[:20])
    ]
    r = c.post(
        f"/api/sessions/{classroom.session.pk}/frames/", {"frames": files}, format="multipart"
    )
    assert r.status_code == 202 and len(r.json()["accepted"]) == 20
    wait_for(
        lambda: "analyse_batch" in slow.log.read_text() and "received" in slow.log.read_text(),
        60,
        "the worker to take the batch",
    )
    time.sleep(1)  # inside the batch (it sleeps before committing)
    slow.kill()
    assert not Reading.objects.filter(session=classroom.session, analysed_at__isnull=False).exists()
    assert len(get_frame_store().keys()) == 20  # the frames wait for the redelivery

    t0 = time.monotonic()
    worker_factory(
        "replacement",
        CELERY_VISIBILITY_TIMEOUT=3,
        CELERY_UNACKED_RESTORE_INTERVAL=1,
        CELERY_UNACKED_RESTORE_THROTTLE=1,
    )
    print(f"replacement up after {time.monotonic() - t0:.1f}s")
    done = Reading.objects.filter(session=classroom.session, analysed_at__isnull=False)
    wait_for(lambda: done.count() == 20, 120, "the redelivered batch")
    print(f"batch completed {time.monotonic() - t0:.1f}s after the kill")
    readings = Reading.objects.filter(session=classroom.session)
    assert readings.count() == 20
    assert sorted(readings.values_list("sequence", flat=True)) == list(range(20))
    assert all(x.face_found and x.label for x in readings)
    wait_for(lambda: get_frame_store().keys() == [], 10, "frames to be deleted")
