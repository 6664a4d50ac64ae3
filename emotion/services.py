"""Writes for the frames → readings pipeline."""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import cv2
import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Count, F, Max, Q, Value
from django.utils import timezone

from emotion.agreement import consensus
from emotion.framestore import get_frame_store
from emotion.models import LabelReview, ModelVersion, Reading
from emotion.selectors import review_refusal
from emotion.validation import (
    CROP_BYTES,
    MAX_SEQUENCE,
    FrameRejection,
    check_crop,
    check_cues,
    check_frame,
    check_sequence,
    crop_array,
    decode_frame,
)
from ml.classes import EMOTIONS
from ml.engagement import Observation, attentive
from ml.faces import FoundFace
from tutoring.models import Consent, Course, LearnerSession

logger = logging.getLogger(__name__)


#: draws the random sample of confident readings queued for review (seed or patch it in tests)
review_random = random.Random()

#: a frame given to the model this many times by deliveries that died with their worker is
#: recorded as ``inference_failed`` instead of being tried again (once in its batch, once alone)
MAX_LOST_RUNS = 2


class SessionClosed(Exception):
    """Frames for a session that has ended (HTTP 409)."""


class SessionBacklogged(Exception):
    """More of a session's frames would wait for inference than allowed (HTTP 429)."""

    def __init__(self, pending: int, incoming: int, limit: int):
        self.pending, self.incoming, self.limit = pending, incoming, limit
        super().__init__(
            f"{pending} frame(s) of this session are still waiting for inference; {incoming} "
            f"more would exceed {limit}: retry when they are analysed"
        )


FRAME_KINDS = ("picture", "crop", "cues")


@dataclass
class IncomingFrame:
    data: bytes
    sequence: int | None = None
    captured_at: datetime | None = None
    name: str | int = ""  # the file's name, or its index in a JSON request
    size: int | None = None  # declared size, when the bytes were not read (too large)
    # picture: a camera picture, the server finds the face; crop: the device found it and
    # sends a 48×48 crop (``data``) and ``cues``; cues: the device sends ``cues`` alone
    kind: str = "picture"
    cues: dict | None = None
    # what the transport already found wrong with it (an unreadable time or crop encoding):
    # reported as this frame's rejection, the others are still accepted
    rejection: FrameRejection | None = None


@dataclass
class AcceptResult:
    accepted: list[dict] = field(default_factory=list)  # {"sequence", "reading"}
    duplicates: list[int] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)  # {"file", "sequence", "code", "reason"}
    # cues frames accepted in bulk: the session's live summary after the batch, for the
    # socket that sent them (on its session's last frame of the batch)
    summary: dict | None = None

    @property
    def reading_ids(self) -> list[int]:
        return [a["reading"] for a in self.accepted]


def session_check_ingest(*, session: LearnerSession) -> Course:
    """Raise unless frames may be ingested now: session open and consent still active. The
    session's course as it is now (a socket's copy may be older than a policy change)."""
    if session.status != LearnerSession.Status.ACTIVE:
        raise SessionClosed(f"session {session.pk} has ended")
    consent = Consent.objects.filter(pk=session.consent_id).select_related("course").first()
    return _consent_check(consent)


def _consent_check(consent: Consent | None) -> Course:
    if consent is None or consent.revoked_at is not None:
        raise PermissionDenied("consent for this course was revoked")
    if consent.policy_version != consent.course.consent_policy_version:
        raise PermissionDenied("this course's data policy changed: read it and give consent again")
    return consent.course


def frames_accept(
    *,
    session: LearnerSession,
    frames: list[IncomingFrame],
    enqueue: bool = True,
    max_pending: int | None = None,
) -> AcceptResult:
    """Validate frames, create pending readings, hold the bytes for inference, queue it.

    A bad frame is rejected with its reason; the others are accepted. A sequence number that
    already has a reading is a duplicate (a client retry): reported, not stored twice. With
    ``max_pending``, raises ``SessionBacklogged`` and accepts none of the new frames when the
    session would have more than that many waiting for inference.
    """
    course = session_check_ingest(session=session)
    result = AcceptResult()
    now = timezone.now()
    valid = _validate(session, course, frames, now, result)
    if not valid:
        return result
    store = get_frame_store()
    with transaction.atomic():
        locked = LearnerSession.objects.select_for_update().get(pk=session.pk)
        if locked.status != LearnerSession.Status.ACTIVE:
            raise SessionClosed(f"session {session.pk} has ended")
        wanted = {f.sequence for f, _ in valid if f.sequence is not None}
        existing = set(
            Reading.objects.filter(session=locked, sequence__in=wanted).values_list(
                "sequence", flat=True
            )
        )
        # the session row's lock makes this read-then-insert one step for concurrent uploads
        # (REST and socket alike); ``is None``, not ``or``: a maximum of 0 is a sequence
        last = Reading.objects.filter(session=locked).aggregate(m=Max("sequence"))["m"]
        new = _allocate(locked, valid, existing, last, now, result)
        queued = [r for f, r in new if f.kind != "cues"]  # cues frames wait for nothing
        if max_pending is not None and queued:  # all or nothing: a retry stays simple
            pending = Reading.objects.filter(session=locked, analysed_at__isnull=True).count()
            if pending + len(queued) > max_pending:
                raise SessionBacklogged(pending, len(queued), max_pending)
        created = Reading.objects.bulk_create([r for _, r in new])
        for (f, _), reading in zip(new, created, strict=True):
            if f.kind != "cues":
                store.put(reading.pk, f.data, settings.FRAME_TTL_SECONDS)
            result.accepted.append(
                {"sequence": reading.sequence, "reading": reading.pk, "queued": f.kind != "cues"}
            )
        locked.last_frame_at = now
        locked.save(update_fields=["last_frame_at"])
        ids = [a["reading"] for a in result.accepted if a["queued"]]
        if enqueue and ids:
            transaction.on_commit(lambda: readings_enqueue_or_leave(reading_ids=ids))
        analysed = [r for f, r in new if f.kind == "cues"]
        if analysed:  # analysed now: they reach the live view as a worker's batch does
            transaction.on_commit(lambda: _broadcast_or_log(analysed))
    return result


def _validate(
    session: LearnerSession,
    course: Course,
    frames: list[IncomingFrame],
    now: datetime,
    result: AcceptResult,
) -> list[tuple[IncomingFrame, dict | None]]:
    """The frames that pass their checks, each with its validated cues; the others are added
    to ``result.rejected`` with their reason."""
    skew = timedelta(seconds=settings.EMOTION_LIMITS["max_clock_skew_s"])
    valid: list[tuple[IncomingFrame, dict | None]] = []
    for f in frames:
        try:
            cues = _check_kind(session, course, f)
            if f.captured_at is not None and not (
                session.started_at - skew <= f.captured_at <= now + skew
            ):
                raise FrameRejection(
                    "bad_timestamp", "captured_at is too far from the session's time"
                )
            check_sequence(f.sequence)
        except FrameRejection as e:
            result.rejected.append(
                {"file": f.name, "sequence": f.sequence, "code": e.code, "reason": e.reason}
            )
            continue
        valid.append((f, cues))
    return valid


def _allocate(
    locked: LearnerSession,
    valid: list[tuple[IncomingFrame, dict | None]],
    existing: set[int],
    last: int | None,
    now: datetime,
    result: AcceptResult,
) -> list[tuple[IncomingFrame, Reading]]:
    """The new readings of ``valid`` frames of the session (locked by the caller), numbered
    after ``last`` where the client sent no sequence; duplicates of ``existing`` sequences
    (or of each other) are added to ``result.duplicates``."""
    next_seq = 0 if last is None else last + 1
    new, seen = [], set()
    for f, cues in valid:
        seq = f.sequence
        if seq is None:
            seq = max(next_seq, max(seen, default=-1) + 1)
            if seq > MAX_SEQUENCE:  # only a client that sent MAX_SEQUENCE itself gets here
                result.rejected.append(
                    {
                        "file": f.name,
                        "sequence": None,
                        "code": "bad_sequence",
                        "reason": f"the session's sequence numbers are used up "
                        f"(maximum {MAX_SEQUENCE}); start a new session",
                    }
                )
                continue
        if seq in existing or seq in seen:
            result.duplicates.append(seq)
            continue
        seen.add(seq)
        reading = Reading(
            session=locked, sequence=seq, captured_at=f.captured_at or now, received_at=now
        )
        if cues is not None:
            _device_reading(reading, cues, analysed=now if f.kind == "cues" else None)
        new.append((f, reading))
    return new


def device_frames_accept(
    *, items: list[tuple[LearnerSession, IncomingFrame]], max_pending: int | None = None
) -> list[AcceptResult | Exception]:
    """Accept device frames (cues, and crops) of many sessions (one server process's sockets)
    at once: for each item its result as :func:`frames_accept` gives it, or the exception it
    raises (``SessionClosed``, ``PermissionDenied``, ``SessionBacklogged``) for that item's
    session.

    Same checks, sequence allocation, duplicate rules and ``max_pending`` bound as
    ``frames_accept``, in one transaction and a handful of queries for the whole batch instead
    of six per frame, the crops' bytes held in one round trip, and one live broadcast for the
    cues frames' readings after the commit instead of one per frame: at hundreds of learners a
    frame each second, those per-frame round trips were the web process's limit. Crops are
    left to the caller to queue (``readings_enqueue``), as with ``enqueue=False``.
    """
    now = timezone.now()
    sessions = {s.pk: s for s, _ in items}
    consents = Consent.objects.select_related("course").in_bulk(
        [s.consent_id for s in sessions.values()]
    )
    results: dict[int, AcceptResult | Exception] = {}
    valid: dict[int, list] = {}
    for pk, session in sessions.items():
        try:
            if session.status != LearnerSession.Status.ACTIVE:
                raise SessionClosed(f"session {pk} has ended")
            course = _consent_check(consents.get(session.consent_id))
        except (SessionClosed, PermissionDenied) as e:
            results[pk] = e
            continue
        results[pk] = AcceptResult()
        # named by their index in ``items``: each item gets its own frame's outcome back
        frames = [replace(f, name=i) for i, (s, f) in enumerate(items) if s.pk == pk]
        valid[pk] = _validate(session, course, frames, now, results[pk])
    accepted: dict[int, dict] = {}
    summaries: dict[int, dict] = {}  # filled once the batch is committed
    with transaction.atomic():
        new = _device_allocate(valid, results, now)
        new = _within_pending(new, results, max_pending)
        created = Reading.objects.bulk_create([r for _, r in new])
        crops = {}
        for (f, _), reading in zip(new, created, strict=True):
            queued = f.kind != "cues"
            if queued:
                crops[reading.pk] = f.data
            accepted[f.name] = {
                "sequence": reading.sequence,
                "reading": reading.pk,
                "queued": queued,
            }
        get_frame_store().put_many(crops, settings.FRAME_TTL_SECONDS)
        # as frames_accept: every open session that sent a valid frame, new or a duplicate
        touched = [pk for pk, v in valid.items() if v and isinstance(results[pk], AcceptResult)]
        LearnerSession.objects.filter(pk__in=touched).update(last_frame_at=now)
        analysed = [r for r in created if r.analysed_at is not None]
        if analysed:  # analysed now: they reach the live view as a worker's batch does, and
            # each session's summary goes back with its frame, not through the channel layer
            transaction.on_commit(
                lambda: summaries.update(_broadcast_or_log(analysed, to_sessions=False))
            )
    last = {s.pk: i for i, (s, _) in enumerate(items)}
    out = [_one_result(results[s.pk], i, f, accepted) for i, (s, f) in enumerate(items)]
    for i, (s, _) in enumerate(items):
        if last[s.pk] == i and isinstance(out[i], AcceptResult):
            out[i].summary = summaries.get(s.pk)
    return out


def _within_pending(
    new: list[tuple[IncomingFrame, Reading]], results: dict, max_pending: int | None
) -> list[tuple[IncomingFrame, Reading]]:
    """``new`` less the frames of sessions that would have more than ``max_pending`` frames
    waiting for inference (their result becomes ``SessionBacklogged``: none of their frames is
    accepted, as ``frames_accept`` does); the sessions are locked by the caller."""
    queued: dict[int, int] = {}
    for f, r in new:
        if f.kind != "cues":
            queued[r.session_id] = queued.get(r.session_id, 0) + 1
    if max_pending is None or not queued:
        return new
    pending = dict(
        Reading.objects.filter(session_id__in=list(queued), analysed_at__isnull=True)
        .values("session_id")
        .annotate(n=Count("pk"))
        .values_list("session_id", "n")
    )
    over = {pk for pk, n in queued.items() if pending.get(pk, 0) + n > max_pending}
    for pk in over:
        results[pk] = SessionBacklogged(pending.get(pk, 0), queued[pk], max_pending)
    return [(f, r) for f, r in new if r.session_id not in over]


def _device_allocate(
    valid: dict[int, list], results: dict, now
) -> list[tuple[IncomingFrame, Reading]]:
    """The new readings of every session's valid frames, under the sessions' row locks (taken
    in id order: two batches never wait on each other crosswise), as ``frames_accept``."""
    wanted = [pk for pk, v in valid.items() if v]
    locked = {
        s.pk: s
        for s in LearnerSession.objects.select_for_update().filter(pk__in=wanted).order_by("pk")
    }
    seqs = {f.sequence for pk in wanted for f, _ in valid[pk] if f.sequence is not None}
    existing: dict[int, set[int]] = {pk: set() for pk in wanted}
    for pk, seq in Reading.objects.filter(session_id__in=wanted, sequence__in=seqs).values_list(
        "session_id", "sequence"
    ):
        existing[pk].add(seq)
    new = []
    for pk in wanted:
        session = locked.get(pk)
        if session is None or session.status != LearnerSession.Status.ACTIVE:
            results[pk] = SessionClosed(f"session {pk} has ended")
            continue
        last = None
        if any(f.sequence is None for f, _ in valid[pk]):  # the server numbers these
            last = Reading.objects.filter(session=session).aggregate(m=Max("sequence"))["m"]
        new += _allocate(session, valid[pk], existing[pk], last, now, results[pk])
    return new


def _one_result(
    result: AcceptResult | Exception, index: int, frame: IncomingFrame, accepted: dict
) -> AcceptResult | Exception:
    """Item ``index``'s share of its session's result: its frame accepted (``accepted``, by
    item), rejected (named by its index) or, neither, a duplicate of a stored sequence."""
    if isinstance(result, Exception):
        return result
    out = AcceptResult()
    if index in accepted:
        out.accepted.append(accepted[index])
    elif rejected := [r for r in result.rejected if r["file"] == index]:
        out.rejected += rejected
    else:
        out.duplicates.append(frame.sequence)
    return out


def _check_kind(session: LearnerSession, course: Course, f: IncomingFrame) -> dict | None:
    """Validate ``f`` for its kind and the course's policy; its validated cues (device
    frames) or None (a picture). Raises ``FrameRejection``."""
    if f.rejection is not None:
        raise f.rejection
    if f.kind == "picture":
        if not course.allow_full_pictures:
            raise FrameRejection(
                "pictures_not_allowed",
                "this course does not accept camera pictures: send a face crop and cues, "
                "or cues alone",
            )
        check_frame(f.data, size=f.size)
        return None
    if f.kind not in FRAME_KINDS:
        raise FrameRejection("bad_header", f"kind must be one of {', '.join(FRAME_KINDS)}")
    if f.kind == "crop" and not session_sends_crop(session, course):
        raise FrameRejection(
            "crop_not_allowed",
            "no face image is taken in this session (emotion estimation is off): send cues alone",
        )
    cues = check_cues(f.cues)
    if f.kind == "crop":
        if not cues["face"]:
            raise FrameRejection("bad_cues", "a crop frame needs cues.face true and its box")
        check_crop(f.data)
    return cues


def session_sends_crop(session: LearnerSession, course: Course | None = None) -> bool:
    """Whether the device sends a face crop (emotion is estimated) or cues alone: the
    learner agreed to emotion estimation for this session and the course runs it."""
    return session.emotion_enabled and (course or session.course).emotion_inference_enabled


def _device_reading(reading: Reading, cues: dict, *, analysed) -> None:
    """Fill a device frame's reading from its cues; a cues frame (``analysed`` set) is
    complete with them, a crop frame waits for the classifier."""
    reading.face_source = Reading.FaceSource.DEVICE
    reading.cues = cues
    reading.face_found = cues["face"]
    reading.box = cues.get("box")
    reading.attentive = _attentive(cues["face"], cues)
    reading.analysed_at = analysed


def _attentive(face: bool, cues: dict) -> bool:
    """Today's rule (``ml.engagement.attentive``) on a frame's centre offset and face area,
    whether the server or the device measured them."""
    obs = Observation(
        t=0.0,
        face=face,
        center_offset=cues.get("center_offset"),
        area_fraction=cues.get("area_fraction"),
    )
    return attentive(obs)


def _broadcast_or_log(readings: list[Reading], **kwargs) -> dict[int, dict]:
    """The workers' live broadcast for readings analysed at accept time (its session messages
    by session id); the channel layer away must not fail frames already accepted (the next
    batch's summary covers them)."""
    from emotion.live import broadcast_after_batch

    try:
        return broadcast_after_batch(readings, **kwargs)
    except Exception:
        logger.warning("could not broadcast %d reading(s)", len(readings), exc_info=True)
        return {}


def readings_enqueue_or_leave(*, reading_ids: list[int]) -> bool:
    """Queue accepted frames; with the broker away, leave them to the periodic re-queue
    (``FRAME_REQUEUE_AFTER_SECONDS``, well within their TTL) instead of failing a request
    whose frames are already accepted. Whether they were queued."""
    try:
        readings_enqueue(reading_ids=reading_ids)
    except Exception as e:
        logger.warning(
            "could not queue %d accepted frame(s) (%s: %s): left to the periodic re-queue",
            len(reading_ids),
            type(e).__name__,
            e,
        )
        return False
    return True


def readings_enqueue(*, reading_ids: list[int]) -> None:
    """Queue inference in batches of at most INFERENCE_BATCH_SIZE frames."""
    from emotion.tasks import analyse_batch

    n = settings.INFERENCE_BATCH_SIZE
    for i in range(0, len(reading_ids), n):
        analyse_batch.delay(reading_ids[i : i + n])


def frames_discard_pending(*, readings, error: str = "consent_revoked") -> int:
    """Settle the pending ones among ``readings`` (a ``Reading`` queryset) as not analysed
    (``error``), and delete their raw frame bytes once the caller's transaction commits.

    For consent revoked or superseded and for erasure: the bytes go now, not when the queued
    batch runs or their TTL ends. A batch already running writes nothing over these readings
    (it writes only rows still pending), and one queued later skips them. Returns how many.
    """
    now = timezone.now()
    ids = list(readings.filter(analysed_at__isnull=True).values_list("pk", flat=True))
    if ids:
        Reading.objects.filter(pk__in=ids, analysed_at__isnull=True).update(
            analysed_at=now, error=error
        )
        store = get_frame_store()
        transaction.on_commit(lambda: store.delete_many(ids))
    return len(ids)


def _model_version(predictor) -> ModelVersion:
    """The registry row of the checkpoint and precision that ran the batch (a precision new to
    a registered checkpoint gets its row, sharing the checkpoint's status)."""
    from emotion.registry import model_version_sibling

    d = predictor.describe()
    return model_version_sibling(
        sha=predictor.sha256,
        precision=d["precision"],
        name=d["name"],
        metrics={"val_accuracy": d["val_accuracy"]},
    )


def _png(crop) -> bytes:
    ok, buf = cv2.imencode(".png", crop)
    return buf.tobytes() if ok else b""


def _scrub(reading: Reading, now) -> None:
    """Drop what inference found: the reading only says consent was revoked."""
    for name, value in (
        ("face_found", False),
        ("box", None),
        ("cues", {}),
        ("attentive", False),
        ("probs", None),
        ("label", None),
        ("confidence", None),
        ("model_version", None),
        ("face_crop", None),
        ("uncertain", False),
        ("review_reason", ""),
    ):
        setattr(reading, name, value)
    reading.analysed_at, reading.error = now, "consent_revoked"


def _predict(predictor, images, classify, timings) -> list:
    """The batch's faces per frame. When the batched call fails, each frame is tried alone:
    a frame that fails alone gets ``None`` (its reading says ``inference_failed``) and the
    others are kept. When every frame fails, the error is the model's or the worker's, not a
    frame's: it is raised, so the task is retried and nothing is recorded."""
    try:
        return predictor.predict_frames(images, classify, timings)
    except SoftTimeLimitExceeded:
        raise  # the task's time is up: not a frame's fault, and no time left to try each
    except Exception:
        if len(images) == 1:
            raise
        logger.exception("batch of %d frames failed: trying each frame alone", len(images))
    out, first_error = [], None
    for img, emo in zip(images, classify, strict=True):
        try:
            out.append(predictor.predict_frames([img], [emo], timings)[0])
        except SoftTimeLimitExceeded:
            raise
        except Exception as e:
            first_error = first_error or e
            out.append(None)
    if all(faces is None for faces in out):
        raise first_error
    logger.warning("%d of %d frames failed alone", sum(f is None for f in out), len(out))
    return out


def readings_analyse(*, reading_ids: list[int]) -> dict:
    """Run the CNN on pending readings; idempotent (analysed readings are skipped).

    All results of a batch are written in one transaction, and only to readings still pending
    then: when two deliveries of a batch overlap (a re-queue while the first was slow), the
    first to commit wins and the other's results are dropped, never written over it. The raw
    frames are deleted only after the commit, so a worker killed mid-batch leaves everything
    for the redelivery. Frames of a session whose consent was revoked after they were
    accepted are not analysed: they are recorded as ``consent_revoked`` and their bytes deleted.
    """
    from emotion.inference import get_predictor
    from emotion.live import broadcast_after_batch
    from emotion.tasks import analyse_batch

    t_start = time.perf_counter()
    store = get_frame_store()
    pending = list(
        Reading.objects.filter(pk__in=reading_ids, analysed_at__isnull=True)
        .select_related("session__course", "session__consent")
        .order_by("pk")
    )
    if not pending:
        store.delete_many(reading_ids)
        return {"analysed": 0, "skipped": len(reading_ids)}
    if len(pending) > 1 and any(r.lost_runs for r in pending):
        # an earlier delivery of these frames died with its worker (or is still running):
        # one frame may kill every worker that takes it, so each goes alone from now on and
        # the others are not held hostage by it
        logger.warning("a delivery of %d frames was lost: queuing each alone", len(pending))
        for r in pending:
            analyse_batch.delay([r.pk])
        return {"analysed": 0, "skipped": len(reading_ids) - len(pending), "split": len(pending)}
    now = timezone.now()
    revoked = [r for r in pending if r.session.consent.revoked_at is not None]
    for r in revoked:
        r.analysed_at, r.error = now, "consent_revoked"
    to_run = [r for r in pending if r.session.consent.revoked_at is None]
    for r in [r for r in to_run if r.lost_runs >= MAX_LOST_RUNS]:
        logger.error(
            "frame of reading %d was lost with its worker %d times: given up", r.pk, r.lost_runs
        )
        r.analysed_at, r.error = now, "inference_failed"
        to_run.remove(r)
    frames = store.get_many([r.pk for r in to_run]) if to_run else {}
    # no frame, no model: a re-queue that only records expired frames loads no weights
    predictor = get_predictor() if frames else None
    t_fetched = time.perf_counter()
    running = [r.pk for r in to_run if r.pk in frames]
    # committed before decoding: if this process dies from here on, the next delivery knows.
    # Any way back (results written, or an exception raised to the task) takes the mark back:
    # only a delivery that never returns leaves it.
    _mark_running(running)
    try:
        rows, images, classify = _decode(to_run, frames, now)
        t_decoded = time.perf_counter()
        timings: dict = {}
        preds = _predict(predictor, images, classify, timings) if images else []
        mv = _model_version(predictor) if rows else None
        threshold = predictor.describe()["uncertainty_threshold"] if rows else 0.0
        _apply(rows, preds, classify, mv, threshold)
        if settings.INFERENCE_TEST_DELAY_SECONDS:
            logger.info("test delay: %.1f s before writing", settings.INFERENCE_TEST_DELAY_SECONDS)
            time.sleep(settings.INFERENCE_TEST_DELAY_SECONDS)
        t_db = time.perf_counter()
        written = _write_results(pending, now, running)
    except Exception:  # came back, with an error: not lost (the task fails and is retried)
        _unmark_running(running)
        raise
    # every id is analysed now, by this delivery or another one: no frame is needed any more
    store.delete_many(reading_ids)
    t_broadcast = time.perf_counter()
    broadcast_after_batch(written)
    t_end = time.perf_counter()
    try:  # the workers' capacity, which stream credit follows
        worker = f"{socket.gethostname()}:{os.getpid()}"  # the pool's child, not its parent
        store.record_analysed(len(written), t_end - t_start, worker)
    except Exception:  # a measurement: never the batch's failure
        logger.warning("could not record the batch's timing", exc_info=True)
    stats = {
        "analysed": len(written),
        "skipped": len(reading_ids) - len(written),
        "faces": sum(r.face_found for r in written),
        "consent_revoked": sum(r.error == "consent_revoked" for r in written),
        "fetch_s": round(t_fetched - t_start, 5),
        "decode_s": round(t_decoded - t_fetched, 5),
        "detect_s": round(timings.get("detect_s", 0.0), 5),
        "classify_s": round(timings.get("classify_s", 0.0), 5),
        "db_s": round(t_broadcast - t_db, 5),
        "broadcast_s": round(t_end - t_broadcast, 5),
        "total_s": round(t_end - t_start, 5),
    }
    logger.info("batch analysed %s", json.dumps(stats))
    return stats


def _decode(to_run: list[Reading], frames: dict, now) -> tuple[list, list, list]:
    """The readings with a decodable frame, their images and whether to classify each; the
    others are marked ``frame_expired`` or ``undecodable``."""
    rows, images, classify = [], [], []
    for r in to_run:
        data = frames.get(r.pk)
        img = _image(r, data) if data is not None else None
        r.analysed_at = now
        if img is None:
            r.error = "frame_expired" if data is None else "undecodable"
            continue
        rows.append(r)
        images.append(img)
        course = r.session.course
        classify.append(r.session.emotion_enabled and course.emotion_inference_enabled)
    return rows, images, classify


def _image(r: Reading, data: bytes) -> np.ndarray | FoundFace | None:
    """What the model takes for a held frame: a picture, decoded (the server finds the face),
    or the device's crop as it is (the face was found on the learner's device)."""
    if r.face_source == Reading.FaceSource.DEVICE:
        return FoundFace(crop_array(data)) if len(data) == CROP_BYTES else None
    return decode_frame(data)


def _apply(rows: list[Reading], preds: list, classify: list[bool], mv, threshold: float) -> None:
    """Set each reading's fields from the faces found in its frame; ``threshold`` is the
    model's default abstention threshold (a course's own overrides it)."""
    for r, faces, emo in zip(rows, preds, classify, strict=True):
        if faces is None:  # this frame alone made the model fail
            r.error = "inference_failed"
            continue
        r.model_version = mv
        if r.face_source == Reading.FaceSource.DEVICE:
            face = faces[0]  # the crop itself: its box and cues came with it, kept as sent
        else:
            r.face_found = bool(faces)
            if not faces:
                continue
            face = faces[0]  # the most certain face is the learner's
            r.box = list(face.box)
            r.cues = {**face.cues, "n_faces": len(faces)}
            r.attentive = _attentive(True, face.cues)
        if not emo:
            continue  # engagement only: no emotion, so never uncertain nor queued
        course = r.session.course
        r.probs, r.label, r.confidence = face.probs, face.label, face.confidence
        own = course.uncertainty_threshold
        r.uncertain = face.confidence < (threshold if own is None else own)
        if (
            course.keep_face_crops
            and r.session.consent.policy_version == course.consent_policy_version
            and face.crop is not None
        ):  # only when the learner agreed to the policy that keeps them, and only for label
            # review of an expression they agreed to have estimated
            r.face_crop = _png(face.crop)
            r.review_reason = _review_reason(r.uncertain)


def _review_reason(uncertain: bool) -> str:
    """Why a reading with a kept crop is queued for review: every uncertain one, and a random
    REVIEW_SAMPLE_RATE of the confident ones (so the queue measures the model too)."""
    if uncertain:
        return Reading.ReviewReason.UNCERTAIN
    if review_random.random() < settings.REVIEW_SAMPLE_RATE:
        return Reading.ReviewReason.SAMPLE
    return ""


def _write_results(pending: list[Reading], now, running: list[int]) -> list[Reading]:
    """Write the batch's results in one transaction, only over readings still pending, and
    take back this delivery's ``lost_runs`` mark in it: the run came back, whether its results
    are kept or another delivery's won (a rollback keeps the mark for ``_unmark_running``)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            revoked_at = _update_pending_sql(pending, running)
        else:
            revoked_at = _update_pending_orm(pending)
        written = [r for r in pending if r.pk in revoked_at]
        # consent revoked while the model ran still wins: those results are dropped
        scrubbed = [
            r for r in written if revoked_at[r.pk] is not None and r.error != "consent_revoked"
        ]
        for r in scrubbed:
            _scrub(r, now)
        if scrubbed:
            Reading.objects.bulk_update(scrubbed, Reading.ANALYSIS_FIELDS)
        # the SQL path took back the mark of the rows it wrote; the ORM path of none
        unmark = running if connection.vendor != "postgresql" else set(running) - set(revoked_at)
        if unmark:
            Reading.objects.filter(pk__in=unmark).update(lost_runs=F("lost_runs") - 1)
    return written


def _update_pending_orm(pending: list[Reading]) -> dict[int, datetime | None]:
    """Lock the rows still pending, write them (SQLite, embedded mode): the written readings'
    consent ``revoked_at``, by id."""
    still_pending = dict(
        Reading.objects.select_for_update(of=("self",))
        .filter(pk__in=[r.pk for r in pending], analysed_at__isnull=True)
        .values_list("pk", "session__consent__revoked_at")
    )
    Reading.objects.bulk_update(
        [r for r in pending if r.pk in still_pending], Reading.ANALYSIS_FIELDS
    )
    return still_pending


def _update_pending_sql(pending: list[Reading], running: list[int]) -> dict[int, datetime | None]:
    """One ``UPDATE … FROM (VALUES …)`` (PostgreSQL) writing the rows still pending and taking
    back the ``lost_runs`` mark of those among them in ``running``: the written readings'
    consent ``revoked_at``, by id. A row another delivery wrote first fails ``analysed_at IS
    NULL`` once its commit is seen (the update waits on its lock), so the first to commit wins.
    """
    fields = [Reading._meta.get_field(name) for name in Reading.ANALYSIS_FIELDS]
    qn = connection.ops.quote_name
    cols = [qn(f.column) for f in fields]
    cast = ", ".join(f"%s::{f.db_type(connection)}" for f in fields)
    ran, params = set(running), []
    for r in pending:
        params += [r.pk, int(r.pk in ran)]
        params += [f.get_db_prep_save(getattr(r, f.attname), connection) for f in fields]
    session, consent = LearnerSession._meta.db_table, Consent._meta.db_table
    sql = (
        f"UPDATE {qn(Reading._meta.db_table)} AS r SET "
        + ", ".join(f"{c} = v.{c}" for c in cols)
        + ", lost_runs = r.lost_runs - v.ran FROM (VALUES "
        + ", ".join([f"(%s::bigint, %s::smallint, {cast})"] * len(pending))
        + f") AS v(id, ran, {', '.join(cols)})"
        + " WHERE r.id = v.id AND r.analysed_at IS NULL"
        + f" RETURNING r.id, (SELECT c.revoked_at FROM {qn(session)} s"
        + f" JOIN {qn(consent)} c ON c.id = s.consent_id WHERE s.id = r.session_id)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return dict(cursor.fetchall())


def _mark_running(running: list[int]) -> None:
    """Count this delivery's run on its frames' readings, committed before the model runs.

    On PostgreSQL the commit does not wait for the WAL flush (``synchronous_commit`` off for
    this transaction only): the mark is there for a worker that dies, and a committed row
    outlives the worker either way; only a crash of the database itself within a fraction of
    a second could lose it, and then the redelivery runs the batch whole, as it would have
    before the mark existed. The results' commit stays synchronous.
    """
    if not running:
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        Reading.objects.filter(pk__in=running).update(lost_runs=F("lost_runs") + 1)


def _unmark_running(running: list[int]) -> None:
    """Take back this delivery's ``lost_runs`` mark after an error came back to the task (best
    effort: the database may be away, and then the mark stays, as for a lost delivery)."""
    from django.db import connection

    connection.close_if_unusable_or_obsolete()
    try:
        Reading.objects.filter(pk__in=running).update(lost_runs=F("lost_runs") - 1)
    except (OperationalError, InterfaceError):
        logger.warning("could not take back the lost_runs mark of %d frame(s)", len(running))


def readings_requeue_stale(*, older_than_s: float = 60.0, backoff: bool = True) -> int:
    """Re-queue readings still waiting for inference after ``older_than_s`` seconds.

    Covers a web process that died holding a partly filled batch, or a lost broker message.
    The task is idempotent, so re-queuing a reading that is merely slow costs one no-op.
    Frames whose bytes have expired meanwhile are recorded as ``frame_expired``.

    With ``backoff`` (the periodic task) a reading queued again is next eligible only when it
    has waited as long again as it had then (gaps of 1, 2, 4… minutes): while the workers are
    down or behind, each beat adds a copy of the new stragglers only, not of the whole
    backlog. Without it (start-up, where the in-process queue is known lost) every pending
    reading older than ``older_than_s`` is queued.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=older_than_s)
    stale = Reading.objects.filter(analysed_at__isnull=True, received_at__lt=cutoff)
    if backoff:
        # never re-queued, or waited since the last re-queue at least as long as before it
        stale = stale.filter(
            Q(requeued_at__isnull=True)
            | Q(requeued_at__lt=cutoff)
            & Q(requeued_at__lte=Value(now) - (F("requeued_at") - F("received_at")))
        )
    ids = list(stale.order_by("pk").values_list("pk", flat=True)[:10_000])
    if ids:
        Reading.objects.filter(pk__in=ids).update(requeued_at=now)
        readings_enqueue(reading_ids=ids)
    return len(ids)


def _reviewed_label_settle(reading: Reading) -> None:
    """Set ``reading.reviewed_label`` to what all its reviews settle on
    (``agreement.consensus``); the caller saves it."""
    labels = list(reading.reviews.order_by("created_at", "pk").values_list("label", flat=True))
    reading.reviewed_label = consensus(labels)


@transaction.atomic
def reading_review(*, reading: Reading, label: str, reviewer) -> Reading:
    """Record ``reviewer``'s label for the face on ``reading`` (their ``LabelReview``; given
    again, it corrects their earlier one) and settle the reading's ``reviewed_label``, the
    label training uses, on what all its reviews say: one review, its label; two, theirs if
    they agree, else none; three, the majority (docs/review.md). ``reviewed_by`` and
    ``reviewed_at`` are this, the latest, review. Only an expression the model estimated, with
    its face crop kept, can be labelled: the learner agreed to both."""
    if label not in EMOTIONS:
        raise ValidationError(f"unknown expression {label!r}: one of {', '.join(EMOTIONS)}")
    reading = Reading.objects.select_for_update().get(pk=reading.pk)
    if (refusal := review_refusal(reading=reading)) is not None:
        raise ValidationError(refusal)
    LabelReview.objects.update_or_create(
        reading=reading, reviewer=reviewer, defaults={"label": label}
    )
    _reviewed_label_settle(reading)
    reading.reviewed_by, reading.reviewed_at = reviewer, timezone.now()
    reading.save(update_fields=["reviewed_label", "reviewed_by", "reviewed_at"])
    return reading


@transaction.atomic
def reading_review_withdraw(*, reading: Reading, reviewer) -> Reading:
    """Take back ``reviewer``'s label for ``reading`` (an admin clearing it) and settle the
    reading's ``reviewed_label`` on the reviews left; ``reviewed_by``/``reviewed_at`` become
    the latest one left's (none when none is)."""
    reading = Reading.objects.select_for_update().get(pk=reading.pk)
    LabelReview.objects.filter(reading=reading, reviewer=reviewer).delete()
    _reviewed_label_settle(reading)
    latest = reading.reviews.order_by("-created_at", "-pk").first()
    reading.reviewed_by = latest.reviewer if latest else None
    reading.reviewed_at = latest.created_at if latest else None
    reading.save(update_fields=["reviewed_label", "reviewed_by", "reviewed_at"])
    return reading


@transaction.atomic
def label_reviews_withdraw(*, reviewer) -> int:
    """Take back every review ``reviewer`` gave (their account is being deleted), settling
    each reading's ``reviewed_label`` on the reviews left. Returns the readings changed."""
    ids = list(LabelReview.objects.filter(reviewer=reviewer).values_list("reading_id", flat=True))
    for reading in Reading.objects.filter(pk__in=ids).only("pk"):
        reading_review_withdraw(reading=reading, reviewer=reviewer)
    return len(ids)
