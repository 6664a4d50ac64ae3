"""The model registry: which checkpoint the workers run, and how one becomes that checkpoint.

Writes (``model_version_*``) and reads (``active_model_version``…) of :class:`ModelVersion`
kept together: they share one rule, that the status belongs to the checkpoint (its sha256),
so every row of one sha (one per precision that ran it) changes together. docs/models.md
explains the promotion rule.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from emotion.models import ModelVersion
from ml.checkpoint import file_sha256, load_checkpoint

logger = logging.getLogger(__name__)

Status = ModelVersion.Status

#: the cache key every worker reads once a batch: {"sha": ..., "path": ...} of the active one
ACTIVE_KEY = "model:active"

#: the fields that belong to the checkpoint, not to one precision's row
SHARED_FIELDS = (
    "name",
    "status",
    "path",
    "parent",
    "recipe",
    "metrics",
    "decision",
    "promoted_at",
    "retired_at",
)


# --- reads -----------------------------------------------------------------------------------


def active_model_version() -> ModelVersion | None:
    """A row of the active checkpoint (any precision), or None on a fresh install."""
    return ModelVersion.objects.filter(status=Status.ACTIVE).order_by("pk").first()


def active_model_ref() -> dict | None:
    """``{"sha", "path"}`` of the active checkpoint: the cache first (one cheap read a batch),
    the database on a miss or when the cache is away."""
    try:
        ref = cache.get(ACTIVE_KEY)
    except Exception:  # a cache outage must not stop inference
        logger.warning("could not read %s: asking the database", ACTIVE_KEY, exc_info=True)
        ref = None
    if ref:
        return ref
    mv = active_model_version()
    if mv is None:
        return None
    ref = {"sha": mv.checkpoint_sha256, "path": mv.path}
    _cache_set(ref)
    return ref


def model_versions() -> list[ModelVersion]:
    """Every checkpoint once (its first row), newest first, parents loaded."""
    seen, out = set(), []
    for mv in ModelVersion.objects.select_related("parent").order_by("pk"):
        if mv.checkpoint_sha256 not in seen:
            seen.add(mv.checkpoint_sha256)
            out.append(mv)
    return out[::-1]


def key_figures(mv: ModelVersion) -> dict:
    """The figures a version is judged on, from its checkpoint's metrics: FER2013 validation
    accuracy and the reviewed held-out slice's, each for the child and for its parent when
    the fine-tune measured both on the same data (None where a figure is missing)."""
    m = mv.metrics or {}
    fer = m.get("fer2013_val") or {}
    rev = m.get("reviewed_test") or {}
    val = (m.get("val") or {}).get("accuracy")  # a trained checkpoint's own validation figure
    return {
        "fer_val": _pair(fer, default_child=val),
        "reviewed": _pair(rev),
    }


def _pair(section: dict, default_child=None) -> dict:
    child = (section.get("child") or {}).get("accuracy", default_child)
    parent = (section.get("parent") or {}).get("accuracy")
    return {"child": child, "parent": parent, "n": section.get("n")}


# --- writes ----------------------------------------------------------------------------------


def worker_precision(ckpt: dict) -> str:
    """The precision the workers of this deployment run ``ckpt`` in (ML_DEVICE,
    ML_PRECISION), as ``ml.runtime.runtime_for_checkpoint`` decides it, without loading it."""
    if settings.ML_PRECISION in ("fp32", "int8"):
        return settings.ML_PRECISION
    on_cpu = settings.ML_DEVICE == "cpu" or (settings.ML_DEVICE == "auto" and not _cuda_available())
    return "int8" if on_cpu and ckpt.get("int8") else "fp32"


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def model_version_register(
    *, path: str | Path, parent: ModelVersion | None = None, status: str = Status.CANDIDATE
) -> ModelVersion:
    """The registry row of the checkpoint at ``path`` (created once per sha256: registering
    the same file again returns its row as it is). Name, recipe and metrics come from the
    checkpoint; ``CheckpointError`` when it is not one this code reads."""
    path = Path(path).resolve()
    ckpt = load_checkpoint(path)
    sha = file_sha256(path)
    mv = ModelVersion.objects.filter(checkpoint_sha256=sha).order_by("pk").first()
    if mv is None:
        mv = _create(path, sha, ckpt, parent)
    if status == Status.ACTIVE and mv.status != Status.ACTIVE:
        mv = model_version_activate(version=mv, reason="registered as the active version")
    return mv


def _create(path: Path, sha: str, ckpt: dict, parent: ModelVersion | None) -> ModelVersion:
    recipe = _jsonable(ckpt.get("recipe") or {})
    named = recipe.get("parent") if isinstance(recipe, dict) else None
    if parent is None and isinstance(named, dict) and named.get("sha256"):
        # a fine-tune made elsewhere (python -m ml finetune) names its parent in its recipe
        parent = ModelVersion.objects.filter(checkpoint_sha256=named["sha256"]).first()
    fields = {
        "name": str(ckpt.get("name") or ckpt["model_config"].get("name") or path.stem)[:100],
        "path": str(path),
        "parent": parent,
        "recipe": recipe,
        "metrics": _jsonable(ckpt.get("metrics") or {}),
        "status": Status.CANDIDATE,
    }
    try:
        with transaction.atomic():
            return ModelVersion.objects.create(
                checkpoint_sha256=sha, precision=worker_precision(ckpt), **fields
            )
    except IntegrityError:  # registered meanwhile by another process
        return ModelVersion.objects.filter(checkpoint_sha256=sha).order_by("pk").first()


def _jsonable(value):
    """``value`` with what JSON cannot hold (tensors, paths, numpy scalars) as plain values."""
    import json

    return json.loads(json.dumps(value, default=_plain))


def _plain(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def model_version_sibling(*, sha: str, precision: str, name: str, metrics: dict) -> ModelVersion:
    """The row of checkpoint ``sha`` run in ``precision`` (what a reading records), created
    with the checkpoint's registry state when this precision is new to it."""
    mv = ModelVersion.objects.filter(checkpoint_sha256=sha, precision=precision).first()
    if mv is not None:
        return mv
    first = ModelVersion.objects.filter(checkpoint_sha256=sha).order_by("pk").first()
    shared = {f: getattr(first, f) for f in SHARED_FIELDS} if first else {}
    defaults = {"name": name, "metrics": metrics, **shared}
    mv, _ = ModelVersion.objects.get_or_create(
        checkpoint_sha256=sha, precision=precision, defaults=defaults
    )
    return mv


def _lock_registry() -> list[ModelVersion]:
    """Lock every registry row (a handful) in id order: promotions, rollbacks and the first
    activation run one at a time, and each then reads the state the previous one committed."""
    return list(ModelVersion.objects.select_for_update().order_by("pk"))


def _set_status(sha: str, **fields) -> None:
    ModelVersion.objects.filter(checkpoint_sha256=sha).update(**fields)


def _activate(mv: ModelVersion, now, **extra) -> None:
    """Make ``mv``'s checkpoint the only active one; the one it replaces becomes ``retired``
    (the caller holds the registry lock)."""
    for sha in _active_shas(exclude=mv.checkpoint_sha256):
        _set_status(sha, status=Status.RETIRED, retired_at=now)
    _set_status(
        mv.checkpoint_sha256, status=Status.ACTIVE, promoted_at=now, retired_at=None, **extra
    )
    ref = {"sha": mv.checkpoint_sha256, "path": mv.path}
    transaction.on_commit(lambda: _cache_set(ref))


def _active_shas(exclude: str = "") -> list[str]:
    return list(
        ModelVersion.objects.filter(status=Status.ACTIVE)
        .exclude(checkpoint_sha256=exclude)
        .values_list("checkpoint_sha256", flat=True)
        .distinct()
    )


def _cache_set(ref: dict) -> None:
    try:
        cache.set(ACTIVE_KEY, ref, settings.MODEL_ACTIVE_CACHE_S)
    except Exception:  # the timeout heals a stale value; the database stays the truth
        logger.warning("could not set %s", ACTIVE_KEY, exc_info=True)


@transaction.atomic
def model_version_activate(*, version: ModelVersion, reason: str) -> ModelVersion:
    """Make ``version`` active without the promotion check (an operator's pin, or the first
    version of a fresh install); ``decision`` records that no check ran, and why."""
    _lock_registry()
    now = timezone.now()
    decision = {"outcome": "activated", "reason": reason, "checked": False, "at": now.isoformat()}
    _activate(version, now, decision=decision)
    version.refresh_from_db()
    return version


@transaction.atomic
def model_version_bootstrap(*, path: str | Path) -> ModelVersion:
    """The active version, making the checkpoint at ``path`` (settings.ML_WEIGHTS) active
    when nothing is: a fresh install's first batch. Race-safe: under the registry lock, the
    second worker to get here finds the first one's active version."""
    mv = model_version_register(path=path)
    _lock_registry()
    active = active_model_version()
    if active is not None:
        return active
    return model_version_activate(version=mv, reason="nothing was active: ML_WEIGHTS bootstrap")


def promotion_check(
    version: ModelVersion, active: ModelVersion | None, tolerance: float, min_reviewed: int
) -> tuple[bool, str, dict]:
    """Whether ``version`` may replace ``active``, why, and the figures compared. Parent and
    child figures come from the fine-tune, which measured both on the same data: they only
    speak for ``active`` when ``active`` is the parent."""
    figs = key_figures(version)
    fer, rev = figs["fer_val"], figs["reviewed"]
    figures = {
        "fer_val": {"active": fer["parent"], "candidate": fer["child"], "n": fer["n"]},
        "reviewed": {"active": rev["parent"], "candidate": rev["child"], "n": rev["n"]},
    }
    if active is None:
        return True, "nothing was active", figures
    refusal = _refusal(version, active, fer, rev, tolerance, min_reviewed)
    if refusal:
        return False, refusal, figures
    why = (
        f"FER2013 validation {fer['child']:.4f} against {fer['parent']:.4f} (tolerance "
        f"{tolerance}); reviewed slice {rev['child']:.4f} > {rev['parent']:.4f} on "
        f"{rev['n']} crops"
    )
    return True, why, figures


def _refusal(version, active, fer: dict, rev: dict, tolerance: float, need: int) -> str:
    """Why ``version`` may not replace ``active`` ("" when it may)."""
    parent = version.parent
    if parent is None or parent.checkpoint_sha256 != active.checkpoint_sha256:
        source = parent.checkpoint_sha256[:12] if parent else "no registered parent"
        return (
            f"fine-tuned from {source}, not from the active version "
            f"{active.checkpoint_sha256[:12]}: its figures were not measured against the "
            "active model (fine-tune again from it, or force)"
        )
    if None in (fer["child"], fer["parent"], rev["child"], rev["parent"]):
        return "the checkpoint lacks parent and child figures to compare"
    if (rev["n"] or 0) < need:
        return (
            f"the held-out reviewed slice has {rev['n'] or 0} crops, fewer than the {need} "
            "(MODEL_PROMOTION_MIN_REVIEWED) needed to tell better from luck"
        )
    if fer["child"] < fer["parent"] - tolerance:
        return (
            f"FER2013 validation accuracy {fer['child']:.4f} is "
            f"{fer['parent'] - fer['child']:.4f} below the active version's "
            f"{fer['parent']:.4f}, beyond the tolerance {tolerance}"
        )
    if not rev["child"] > rev["parent"]:
        return (
            f"reviewed slice accuracy {rev['child']:.4f} is not better than the active "
            f"version's {rev['parent']:.4f}"
        )
    return ""


@transaction.atomic
def model_version_promote(
    *,
    version: ModelVersion,
    tolerance: float | None = None,
    min_reviewed: int | None = None,
    force: bool = False,
) -> ModelVersion:
    """Judge ``version`` against the active one and make it active when it passes (or with
    ``force``); otherwise mark it ``refused``. ``decision`` records the figures compared, the
    tolerance, the outcome and the reason either way. ValidationError when it is active."""
    _lock_registry()
    version.refresh_from_db()
    if version.status == Status.ACTIVE:
        raise ValidationError(f"{version.name} ({version.checkpoint_sha256[:12]}) is active")
    tol = settings.MODEL_PROMOTION_TOLERANCE if tolerance is None else tolerance
    need = settings.MODEL_PROMOTION_MIN_REVIEWED if min_reviewed is None else min_reviewed
    active = active_model_version()
    ok, reason, figures = promotion_check(version, active, tol, need)
    now = timezone.now()
    outcome = "promoted" if ok else "forced" if force else "refused"
    decision = {
        "outcome": outcome,
        "reason": reason,
        "figures": figures,
        "tolerance": tol,
        "min_reviewed": need,
        "against": active.checkpoint_sha256 if active else None,
        "checked": True,
        "at": now.isoformat(),
    }
    if ok or force:
        _activate(version, now, decision=decision)
    elif version.status in (Status.CANDIDATE, Status.REFUSED):
        _set_status(version.checkpoint_sha256, status=Status.REFUSED, decision=decision)
    else:  # a retired or rolled-back version keeps its place in the history
        _set_status(version.checkpoint_sha256, decision=decision)
    version.refresh_from_db()
    return version


@transaction.atomic
def model_version_rollback() -> ModelVersion:
    """The active version becomes ``rolled_back`` and the one active before it (the latest
    promoted among the retired) is active again; returns it. ValidationError when nothing is
    active or nothing was active before."""
    _lock_registry()
    active = active_model_version()
    if active is None:
        raise ValidationError("nothing is active: there is nothing to roll back")
    previous = (
        ModelVersion.objects.filter(status=Status.RETIRED, promoted_at__isnull=False)
        .exclude(checkpoint_sha256=active.checkpoint_sha256)
        .order_by("-promoted_at", "-pk")
        .first()
    )
    if previous is None:
        raise ValidationError(
            f"{active.name} ({active.checkpoint_sha256[:12]}) is the only version that was "
            "ever active: there is no earlier one to roll back to"
        )
    now = timezone.now()
    _set_status(active.checkpoint_sha256, status=Status.ROLLED_BACK, retired_at=now)
    rollback = {"at": now.isoformat(), "replaced": active.checkpoint_sha256}
    _activate(previous, now, decision={**previous.decision, "rollback": rollback})
    previous.refresh_from_db()
    return previous
