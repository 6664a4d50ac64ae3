"""The stream's batcher: a batch the broker refuses is retried, never raised into the socket
that filled it nor lost in a timer's task."""

import asyncio

import pytest

from emotion import batcher as batcher_module
from emotion.batcher import FrameBatcher


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setattr(batcher_module, "SEND_RETRY_DELAYS", (0.01, 0.01))


def test_a_refused_batch_is_retried_then_sent(monkeypatch, fast_retries):
    sent, failures = [], [RuntimeError("broker away")] * 2

    def enqueue(*, reading_ids):
        if failures:
            raise failures.pop()
        sent.append(list(reading_ids))

    monkeypatch.setattr(batcher_module, "readings_enqueue", enqueue)

    async def run():
        b = FrameBatcher(size=2, wait_ms=10)
        await b.add(1)
        await b.add(2)  # a full batch: sent from add(), which must not raise
        await b.add(3)  # this one goes by the timer
        await asyncio.sleep(0.1)
        await b.flush()

    asyncio.run(run())
    assert sent == [[1, 2], [3]]


def test_a_batch_refused_every_time_is_logged_not_raised(monkeypatch, fast_retries, caplog):
    def enqueue(*, reading_ids):
        raise RuntimeError("broker away")

    monkeypatch.setattr(batcher_module, "readings_enqueue", enqueue)

    async def run():
        b = FrameBatcher(size=1, wait_ms=10)
        await b.add(7)

    asyncio.run(run())
    assert "could not queue a batch of 1 frame(s)" in caplog.text
    assert "periodic re-queue" in caplog.text


def test_beat_keeps_its_state_under_data_dir(settings):
    """Not in the working directory, which in the Docker image belongs to root: beat, run as
    the app user, could not write there and crash-looped."""
    from pathlib import Path

    path = Path(settings.CELERY_BEAT_SCHEDULE_FILENAME)
    assert path.is_absolute() and path.parent == Path(settings.DATA_DIR)
