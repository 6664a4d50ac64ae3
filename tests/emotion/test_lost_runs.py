"""A frame that kills the worker holding it (native crash, OOM killer) must not take its
batch down with it, nor crash-loop the inference queue until its bytes expire: a delivery
that died leaves ``lost_runs`` on its readings, the next delivery splits the batch into single
frames, and a frame lost a second time is recorded as ``inference_failed``."""

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from emotion.framestore import get_frame_store
from emotion.models import Reading
from emotion.services import MAX_LOST_RUNS, IncomingFrame, frames_accept, readings_analyse
from tests.emotion.test_analyse import black_jpeg
from tests.emotion.test_worker_failure import wait_for


class WorkerDied(BaseException):
    """Stands in for the process ending mid-batch: no ``except Exception`` sees it."""


@pytest.fixture
def killing_model(monkeypatch):
    """The real model, except that a batch holding an all-black frame 'kills the worker'.
    Counts the frames it is given."""
    import numpy as np

    from emotion.inference import get_predictor

    real, seen = get_predictor(), []

    class Killing:
        sha256 = real.sha256

        def describe(self):
            return real.describe()

        def predict_frames(self, images, classify, timings=None):
            seen.append(len(images))
            if any(not np.any(img) for img in images):
                raise WorkerDied
            return real.predict_frames(images, classify, timings)

    monkeypatch.setattr("emotion.inference.get_predictor", lambda: Killing())
    return seen


@pytest.fixture
def queued(monkeypatch):
    """Batches the service queues, collected instead of run."""
    calls = []
    monkeypatch.setattr("emotion.tasks.analyse_batch.delay", lambda ids: calls.append(ids))
    return calls


def accept(session, *frames) -> list[int]:
    return frames_accept(
        session=session, enqueue=False, frames=[IncomingFrame(f) for f in frames]
    ).reading_ids


def lost_runs(ids) -> list[int]:
    return [Reading.objects.get(pk=i).lost_runs for i in ids]


@pytest.mark.django_db(transaction=True)
def test_a_frame_that_kills_its_worker_is_isolated_then_given_up(
    classroom, face_frames, killing_model, queued
):
    ids = good1, bad, good2 = accept(
        classroom.session, face_frames[0], black_jpeg(), face_frames[1]
    )
    with pytest.raises(WorkerDied):
        readings_analyse(reading_ids=ids)
    # the died delivery left its mark, and every frame for the next one
    assert lost_runs(ids) == [1, 1, 1]
    assert not Reading.objects.filter(pk__in=ids, analysed_at__isnull=False).exists()
    assert set(get_frame_store().get_many(ids)) == set(ids)

    # the redelivery does not run the batch again: it queues each frame alone
    assert readings_analyse(reading_ids=ids) == {"analysed": 0, "skipped": 0, "split": 3}
    assert queued == [[good1], [bad], [good2]] and killing_model == [3]

    assert readings_analyse(reading_ids=[good1])["faces"] == 1
    with pytest.raises(WorkerDied):
        readings_analyse(reading_ids=[bad])
    assert readings_analyse(reading_ids=[good2])["faces"] == 1
    assert lost_runs([bad]) == [MAX_LOST_RUNS]

    # lost twice: recorded without giving it to the model a third time, bytes deleted
    assert readings_analyse(reading_ids=[bad])["analysed"] == 1
    assert killing_model == [3, 1, 1, 1]
    r1, rb, r2 = (Reading.objects.get(pk=i) for i in ids)
    assert rb.error == "inference_failed" and rb.analysed_at and not rb.face_found
    assert r1.error == r2.error == "" and r1.label and r2.label
    assert get_frame_store().get_many(ids) == {}


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_fails_with_an_error_is_not_counted_as_lost(classroom, monkeypatch, queued):
    """An exception comes back to the task (which fails and is retried): the frames are not
    suspected of killing workers, and the retry runs them as one batch again."""

    class Broken:
        def predict_frames(self, images, classify, timings=None):
            raise RuntimeError("CUDA error: out of memory")

    monkeypatch.setattr("emotion.inference.get_predictor", lambda: Broken())
    ids = accept(classroom.session, black_jpeg(), black_jpeg())
    with pytest.raises(RuntimeError, match="out of memory"):
        readings_analyse(reading_ids=ids)
    assert lost_runs(ids) == [0, 0]
    with pytest.raises(RuntimeError, match="out of memory"):
        readings_analyse(reading_ids=ids)
    assert queued == []


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_poison_frame_does_not_crash_loop_a_real_inference_worker(
    classroom, face_frames, worker_factory
):
    """A real prefork worker (one child, as ``make worker-gpu``) whose child process dies on
    the poison frame: Celery requeues the batch at once (reject_on_worker_lost). Before the
    fix each redelivery killed the next child until the frames' bytes expired (300 s) and the
    other learners' frames of the batch were lost with it."""
    worker = worker_factory("killing", app="tests.emotion.killing_worker", pool="prefork")
    c = APIClient()
    c.force_authenticate(classroom.learner)
    frames = [face_frames[0], black_jpeg(), face_frames[1], face_frames[2]]
    files = [SimpleUploadedFile(f"{i}.jpg", d, "image/jpeg") for i, d in enumerate(frames)]
    r = c.post(
        f"/api/sessions/{classroom.session.pk}/frames/", {"frames": files}, format="multipart"
    )
    assert r.status_code == 202 and len(r.json()["accepted"]) == 4
    readings = Reading.objects.filter(session=classroom.session).order_by("sequence")
    wait_for(lambda: not readings.filter(analysed_at__isnull=True).exists(), 90, "every frame")
    assert [x.error for x in readings] == ["", "inference_failed", "", ""]
    assert all(x.face_found and x.label for x in readings if not x.error)
    log = worker.log.read_text()
    crashes = set(re.findall(r"exited prematurely: exitcode 9 Job: (\d+)", log))
    assert len(crashes) == 2, log[-3000:]  # in its batch, then alone
    assert worker.proc.poll() is None  # the worker is still serving
    wait_for(lambda: get_frame_store().keys() == [], 10, "frames to be deleted")


@pytest.mark.django_db(transaction=True)
def test_a_delivery_that_comes_back_takes_its_run_back(classroom, face_frames, admin_client):
    """A successful batch, and a delivery whose results another one beat, leave no mark: only
    a delivery that never returns does (issue 23: every reading showed 'Lost runs: 1')."""
    ids = accept(classroom.session, face_frames[0], face_frames[1], black_jpeg())
    assert readings_analyse(reading_ids=ids)["analysed"] == 3
    assert lost_runs(ids) == [0, 0, 0]
    late = accept(classroom.session, face_frames[2])
    Reading.objects.filter(pk__in=late).update(lost_runs=1)  # one earlier delivery was lost
    assert readings_analyse(reading_ids=late)["faces"] == 1
    assert lost_runs(late) == [1]  # that loss stays on record; this run is taken back

    # what the admin shows of it
    r = admin_client.get(f"/admin/emotion/reading/{ids[0]}/change/")
    html = re.sub(r"\s+", " ", r.content.decode())
    assert re.search(r"<label>Lost runs:</label> <div class=\"readonly\">0</div>", html), html


@pytest.mark.django_db(transaction=True)
def test_a_delivery_beaten_by_another_takes_its_run_back(classroom, face_frames, monkeypatch):
    """Its results are dropped (the other delivery's stand), but it came back."""
    ids = accept(classroom.session, face_frames[0])
    store = get_frame_store()
    real_get_many, calls = type(store).get_many, []

    def get_many(self, reading_ids):
        calls.append(1)
        if len(calls) == 1:  # this delivery has read its rows; another one finishes first
            assert readings_analyse(reading_ids=ids)["analysed"] == 1
        return real_get_many(self, reading_ids)

    monkeypatch.setattr(type(store), "get_many", get_many)
    # the bytes stay after the first delivery, so the beaten one runs the model too
    monkeypatch.setattr(type(store), "delete_many", lambda self, reading_ids: None)
    assert readings_analyse(reading_ids=ids)["skipped"] == 1
    assert lost_runs(ids) == [0]
