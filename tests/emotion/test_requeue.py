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


@pytest.mark.django_db(transaction=True)
def test_requeue_pending_command_reports_lost_frames(classroom, face_frames):
    from io import StringIO

    from django.core.management import call_command

    result = frames_accept(
        session=classroom.session, enqueue=False, frames=[IncomingFrame(face_frames[0])]
    )
    get_frame_store().delete_many(result.reading_ids)  # the process holding them died
    out = StringIO()
    call_command("requeue_pending", stdout=out)
    assert "1 pending reading(s) queued again" in out.getvalue()
    assert Reading.objects.get(pk=result.reading_ids[0]).error == "frame_expired"
