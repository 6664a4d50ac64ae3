"""The model's life, end to end, with a real stream and a real Celery worker: readings from two
learners -> review of their crops -> fine-tune -> the candidate judged: refused twice (too small
a reviewed slice; FER2013 forgotten beyond the tolerance), then promoted with a wide tolerance
-> the worker's next batch runs the new version, without a restart -> rollback -> the batch
after that runs the old one again."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from emotion.finetuning import model_finetune, reviewed_crops
from emotion.models import ModelVersion, Reading
from emotion.registry import (
    active_model_version,
    model_version_promote,
    model_version_rollback,
)
from emotion.services import reading_review
from ml.checkpoint import file_sha256
from ml.finetune import FinetuneConfig
from ml.predictor import DEFAULT_WEIGHTS
from tests.emotion.stream_client import StreamClient, connect
from tests.emotion.test_stream import wait_analysed
from tests.factories import AdminFactory, LearnerSessionFactory
from tutoring.models import Course

Status = ModelVersion.Status
FRAMES = 15  # per learner and batch


async def stream(session, user, frames: list[bytes]) -> list[int]:
    """Send ``frames`` on the learner's socket, wait until all are analysed; their ids."""
    before = await database_sync_to_async(lambda: session.readings.count())()
    comm, ok, _ = await connect(f"/ws/sessions/{session.pk}/stream/", user)
    assert ok
    client = StreamClient(comm)
    ready = await client.ready()
    await client.send_all(frames, start=ready["next_sequence"])
    assert [a["status"] for a in client.acks] == ["accepted"] * len(frames)
    await comm.disconnect()
    await wait_analysed(session, before + len(frames))
    seqs = [a["sequence"] for a in client.acks]
    return await database_sync_to_async(
        lambda: list(session.readings.filter(sequence__in=seqs).values_list("pk", flat=True))
    )()


@database_sync_to_async
def shas(ids: list[int]) -> set[str]:
    return set(
        Reading.objects.filter(pk__in=ids).values_list(
            "model_version__checkpoint_sha256", flat=True
        )
    )


@database_sync_to_async
def review_all(label: str) -> int:
    """Every kept crop labelled ``label`` by a reviewer, through the review service."""
    reviewer = AdminFactory(username="reviewer")
    readings = list(Reading.objects.filter(face_crop__isnull=False).exclude(face_crop=b""))
    for r in readings:
        reading_review(reading=r, label=label, reviewer=reviewer)
    return len(readings)


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_review_finetune_promote_pick_up_and_roll_back(
    classroom, face_frames, fer_root, celery_worker, settings
):
    settings.FER2013_ROOT = fer_root
    await database_sync_to_async(
        lambda: Course.objects.filter(pk=classroom.course.pk).update(keep_face_crops=True)
    )()
    ben = await database_sync_to_async(
        lambda: LearnerSessionFactory(
            learner=classroom.other_learner,
            course=classroom.course,
            consent=classroom.other_learner.consents.get(),
        )
    )()
    learners = [(classroom.session, classroom.learner), (ben, classroom.other_learner)]
    frames = face_frames[:FRAMES]

    # readings from a real stream: the worker's first batch registers ML_WEIGHTS as active
    first = [i for s, u in learners for i in await stream(s, u, frames)]
    old_sha = file_sha256(DEFAULT_WEIGHTS)
    assert await shas(first) == {old_sha}

    # review: every crop "happy", so a fine-tune can measurably move the reviewed slice
    assert await review_all("happy") == 2 * FRAMES
    assert await database_sync_to_async(reviewed_crops().count)() == 2 * FRAMES

    config = FinetuneConfig(epochs=3, lr=1e-3, batch_size=16, replay=0, device="cpu")
    candidate = await database_sync_to_async(model_finetune)(
        config=config, fer_val_limit=100, min_crops=10
    )
    old = await database_sync_to_async(active_model_version)()
    assert candidate.status == Status.CANDIDATE and candidate.parent_id == old.pk
    assert candidate.path.startswith(str(settings.MODEL_DIR))
    m = candidate.metrics
    assert m["fer2013_val"]["n"] == 100 and m["reviewed_test"]["n"] == FRAMES  # one learner
    assert candidate.recipe["parent"]["sha256"] == old_sha

    promote = database_sync_to_async(model_version_promote)
    refused = await promote(version=candidate, min_reviewed=10 * FRAMES)
    assert refused.status == Status.REFUSED
    assert "MODEL_PROMOTION_MIN_REVIEWED" in refused.decision["reason"]
    # trained on "happy" alone, it forgot FER2013: the default tolerance refuses it
    refused = await promote(version=candidate, min_reviewed=FRAMES)
    assert refused.status == Status.REFUSED
    assert "beyond the tolerance 0.01" in refused.decision["reason"]
    promoted = await promote(version=candidate, min_reviewed=FRAMES, tolerance=1.0)
    print("promotion decision:", promoted.decision["reason"])  # the figures, with -s
    figures = promoted.decision["figures"]["reviewed"]
    assert figures["candidate"] > figures["active"], promoted.decision
    assert promoted.status == Status.ACTIVE and promoted.decision["outcome"] == "promoted"

    # the same worker process, not restarted, runs the new version from its next batch
    pid = celery_worker.pid
    second = await stream(classroom.session, classroom.learner, frames[:5])
    assert await shas(second) == {candidate.checkpoint_sha256}

    back = await database_sync_to_async(model_version_rollback)()
    assert back.checkpoint_sha256 == old_sha
    third = await stream(classroom.session, classroom.learner, frames[:5])
    assert await shas(third) == {old_sha}
    assert celery_worker.pid == pid and celery_worker.proc.poll() is None
    statuses = await database_sync_to_async(
        lambda: dict(ModelVersion.objects.values_list("checkpoint_sha256", "status"))
    )()
    assert statuses == {old_sha: Status.ACTIVE, candidate.checkpoint_sha256: Status.ROLLED_BACK}
