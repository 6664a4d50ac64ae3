"""A batch's results are written in one set-based statement on PostgreSQL: every analysis
field must arrive as the worker set it, only over readings still pending, and of two
overlapping deliveries the first to commit wins."""

import threading
import time

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from emotion.models import ModelVersion, Reading
from emotion.services import _write_results
from tests.factories import ReadingFactory, probs_for


def pending(session, lost_runs: int = 1) -> Reading:
    return ReadingFactory(
        session=session, analysed_at=None, face_found=False, probs=None, lost_runs=lost_runs
    )


def results(reading: Reading, now, label: str, crop: bytes) -> Reading:
    """A copy of ``reading`` holding what a delivery's model found."""
    r = Reading.objects.get(pk=reading.pk)
    mv, _ = ModelVersion.objects.get_or_create(name="m", checkpoint_sha256="a" * 64)
    r.analysed_at, r.error, r.face_found = now, "", True
    r.box, r.cues, r.attentive = [1, 2, 30, 40], {"n_faces": 2, "note": "é\u2028\"'"}, True
    r.probs, r.label, r.confidence = probs_for(label, 0.4), label, 0.4
    r.model_version, r.face_crop = mv, crop
    r.uncertain, r.review_reason = True, Reading.ReviewReason.UNCERTAIN
    return r


def stored(pk: int) -> dict:
    r = Reading.objects.get(pk=pk)
    return {name: getattr(r, name) for name in (*Reading.ANALYSIS_FIELDS, "lost_runs")}


@pytest.mark.django_db
def test_every_analysis_field_round_trips(classroom):
    assert connection.vendor == "postgresql"  # the set-based path, not the ORM one
    now = timezone.now()
    a, b = pending(classroom.session), pending(classroom.session)
    crop = bytes(range(256)) + b"\x00\\x00'"  # NUL, backslashes and quotes survive
    ra = results(a, now, "happy", crop)
    rb = Reading.objects.get(pk=b.pk)
    rb.analysed_at, rb.error = now, "frame_expired"  # no frame: nothing else set
    written = _write_results([ra, rb], now, [a.pk])

    assert [r.pk for r in written] == [a.pk, b.pk]
    got = stored(a.pk)
    assert bytes(got.pop("face_crop")) == crop
    assert got == {
        "analysed_at": now,
        "error": "",
        "face_found": True,
        "box": [1, 2, 30, 40],
        "cues": {"n_faces": 2, "note": "é\u2028\"'"},
        "attentive": True,
        "probs": probs_for("happy", 0.4),
        "label": "happy",
        "confidence": 0.4,
        "model_version": ra.model_version,
        "uncertain": True,
        "review_reason": "uncertain",
        "lost_runs": 0,  # its run came back
    }
    got = stored(b.pk)
    assert (got["error"], got["face_crop"], got["probs"], got["box"]) == (
        "frame_expired",
        None,
        None,
        None,
    )
    assert got["lost_runs"] == 1  # it was not run by this delivery: its mark stays


@pytest.mark.django_db
def test_a_reading_already_written_is_not_written_over(classroom):
    now = timezone.now()
    a = pending(classroom.session)
    Reading.objects.filter(pk=a.pk).update(analysed_at=now, label="sad")
    assert _write_results([results(a, now, "happy", b"x")], now, [a.pk]) == []
    got = stored(a.pk)
    assert (got["label"], got["face_crop"], got["lost_runs"]) == ("sad", None, 0)


@pytest.mark.django_db(transaction=True)
def test_of_two_overlapping_deliveries_the_first_to_commit_wins(classroom):
    """The second delivery's statement waits on the first's row locks, then finds the rows
    written and writes nothing; both take back their run."""
    now = timezone.now()
    a = pending(classroom.session, lost_runs=2)  # both deliveries marked it
    first, second = results(a, now, "happy", b"first"), results(a, now, "angry", b"second")
    release, out = threading.Event(), {}

    def deliver(name, reading):
        try:
            with transaction.atomic():  # holds the first's commit until released
                out[name] = _write_results([reading], now, [a.pk])
                if name == "first":
                    release.wait(30)
        finally:
            connections.close_all()

    t1 = threading.Thread(target=deliver, args=("first", first))
    t1.start()
    while "first" not in out and t1.is_alive():  # then the first holds its row lock
        time.sleep(0.01)
    t2 = threading.Thread(target=deliver, args=("second", second))
    t2.start()
    with connection.cursor() as c:  # the second waits on the first's row lock
        while True:
            c.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            )
            if c.fetchone()[0] or not t2.is_alive():
                break
            time.sleep(0.01)
    release.set()
    t1.join(30), t2.join(30)

    assert [r.pk for r in out["first"]] == [a.pk] and out["second"] == []
    got = stored(a.pk)
    assert (got["label"], bytes(got["face_crop"]), got["lost_runs"]) == ("happy", b"first", 0)
