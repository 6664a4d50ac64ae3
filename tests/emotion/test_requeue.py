from datetime import timedelta

import pytest
from django.utils import timezone

from emotion.framestore import get_frame_store
from emotion.models import Reading
from emotion.services import IncomingFrame, frames_accept, readings_requeue_stale


@pytest.mark.django_db(transaction=True)
def test_stale_pending_readings_are_requeued_or_marked_expired(classroom, face_frames):
    result = frames_accept(
        session=classroom.session,
        enqueue=False,
        frames=[IncomingFrame(face_frames[0]), IncomingFrame(face_frames[1])],
    )
    a, b = result.reading_ids
    get_frame_store().delete_many([b])  # b's bytes expired meanwhile
    assert readings_requeue_stale(older_than_s=60) == 0  # too fresh to touch
    Reading.objects.filter(pk__in=[a, b]).update(received_at=timezone.now() - timedelta(minutes=5))
    assert readings_requeue_stale(older_than_s=60) == 2
    ra, rb = Reading.objects.get(pk=a), Reading.objects.get(pk=b)
    assert ra.analysed_at and ra.face_found and ra.error == ""
    assert rb.analysed_at and rb.error == "frame_expired" and not rb.face_found
    assert readings_requeue_stale(older_than_s=60) == 0
