"""A batch whose database connection is terminated mid-task (a PostgreSQL restart, failover,
pg_terminate_backend) is retried with backoff and analysed once, without waiting for the
re-queue and without counting against its frames (issue 20, item 11)."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from rest_framework.test import APIClient

from emotion.models import Reading
from tests.conftest import _test_database_url
from tests.emotion.test_worker_failure import wait_for
from tests.services import require_service

APP = "db-retry-worker"  # the worker's backends, by application_name
OTHERS = f"FROM pg_stat_activity WHERE datname = current_database() AND application_name = '{APP}'"


def terminate_other_backends() -> int:
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(pg_terminate_backend(pid)) {OTHERS}")
        return cur.fetchone()[0]


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_terminated_database_connection_is_retried(classroom, face_frames, worker_factory):
    require_service("PostgreSQL", connection.vendor == "postgresql", "pg_terminate_backend")
    db_url = f"{_test_database_url()}?application_name={APP}"
    worker = worker_factory(
        "db", pool="prefork", INFERENCE_TEST_DELAY_SECONDS=3, DATABASE_URL=db_url
    )
    c = APIClient()
    c.force_authenticate(classroom.learner)
    files = [SimpleUploadedFile(f"{i}.jpg", d, "image/jpeg") for i, d in enumerate(face_frames[:3])]
    r = c.post(
        f"/api/sessions/{classroom.session.pk}/frames/", {"frames": files}, format="multipart"
    )
    assert r.status_code == 202
    # the worker has read and analysed the batch (its connection is open) and has not written
    wait_for(lambda: "test delay" in worker.log.read_text(), 90, "the worker to analyse the batch")
    assert terminate_other_backends() >= 1
    readings = Reading.objects.filter(session=classroom.session)
    wait_for(
        lambda: readings.filter(analysed_at__isnull=False).count() == 3, 60, "the retried batch"
    )
    assert "Retry in" in worker.log.read_text()
    # no mark: the failed delivery took its mark back, so the retry ran the batch whole
    # instead of splitting it as after a lost delivery, and the retry, which wrote them,
    # took its own back too (issue 23: it used to stay, 'Lost runs: 1' on every reading)
    assert [(x.error, x.lost_runs) for x in readings] == [("", 0)] * 3
    assert "queuing each alone" not in worker.log.read_text()
    assert all(x.face_found for x in readings)
