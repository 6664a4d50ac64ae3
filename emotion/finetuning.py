"""Fine-tune the active model on reviewed face crops: the dataset from the readings, the run
(``ml.finetune``), and the new checkpoint registered as a candidate.

The crops stay in memory: the only file written is the new checkpoint. Because they live only
on readings, erasure and retention (which delete readings) take them out of every later run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from emotion.models import ModelVersion, Reading
from emotion.registry import active_model_version, model_version_bootstrap, model_version_register
from ml.checkpoint import load_checkpoint, save_checkpoint
from ml.finetune import FinetuneConfig, FinetuneError, finetune
from ml.predictor import default_weights

logger = logging.getLogger(__name__)

#: fewer reviewed crops than this make no fine-tune worth running
MIN_CROPS = 20


def reviewed_crops():
    """The training set's rows: the readings with an agreed label and a kept crop."""
    return (
        Reading.objects.filter(reviewed_label__isnull=False, face_crop__isnull=False)
        .exclude(face_crop=b"")
        .order_by("pk")
    )


def reviewed_dataset() -> tuple[np.ndarray, list[str], list[int]]:
    """The reviewed crops decoded in memory (N×48×48 uint8), their labels, and each one's
    learner (the group that keeps a learner's faces on one side of the split)."""
    crops, labels, groups = [], [], []
    rows = reviewed_crops().values_list("face_crop", "reviewed_label", "session__learner_id")
    for png, label, learner in rows.iterator(chunk_size=500):
        img = cv2.imdecode(np.frombuffer(bytes(png), np.uint8), cv2.IMREAD_GRAYSCALE)
        if img is None or img.shape != (48, 48):
            logger.warning("skipping a stored crop that is not a 48×48 grayscale PNG")
            continue
        crops.append(img)
        labels.append(label)
        groups.append(learner)
    stacked = np.stack(crops) if crops else np.zeros((0, 48, 48), np.uint8)
    return stacked, labels, groups


def _check_dataset(labels: list, groups: list, min_crops: int) -> None:
    learners = len(set(groups))
    if len(labels) < min_crops or learners < 2:
        raise ValidationError(
            f"{len(labels)} reviewed crop(s) from {learners} learner(s): a fine-tune needs at "
            f"least {min_crops} crops from at least 2 learners (review more on /review/)"
        )


def _fer_dirs(config: FinetuneConfig) -> Path:
    """The FER2013 validation folder both models are scored on (ValidationError when absent),
    and the train folder as ``config``'s replay set where none was given and it exists."""
    root = Path(settings.FER2013_ROOT)
    if not (root / "validation").is_dir():
        raise ValidationError(
            f"FER2013 validation split not found under {root} (set FER2013_ROOT): a candidate "
            "is judged on it"
        )
    if config.replay and config.replay_dir is None and (root / "train").is_dir():
        config.replay_dir = str(root / "train")
    return root / "validation"


def model_finetune(
    *,
    config: FinetuneConfig,
    fer_val_limit: int | None = None,
    min_crops: int = MIN_CROPS,
    progress: Callable[[str], None] = logger.info,
) -> ModelVersion:
    """Fine-tune the active version on the reviewed crops; the new checkpoint, saved under
    ``settings.MODEL_DIR``, registered as a candidate whose parent is the active version.
    ValidationError with the reason when the data cannot make a run."""
    crops, labels, groups = reviewed_dataset()
    progress(f"dataset: {len(labels)} reviewed crops from {len(set(groups))} learners")
    _check_dataset(labels, groups, min_crops)
    fer_val = _fer_dirs(config)
    parent = active_model_version() or model_version_bootstrap(
        path=settings.ML_WEIGHTS or default_weights()
    )
    progress(f"fine-tuning {parent.name} ({parent.checkpoint_sha256[:12]}), {config.epochs} epochs")
    try:
        result = finetune(
            load_checkpoint(parent.path),
            crops,
            labels,
            groups,
            config,
            parent_sha256=parent.checkpoint_sha256,
            fer_val_dir=fer_val,
            fer_val_limit=fer_val_limit,
        )
    except FinetuneError as e:
        raise ValidationError(str(e)) from None
    del crops  # nothing of the reviewed set outlives the run
    path = _save(result.checkpoint, parent)
    progress(f"saved {path}")
    mv = model_version_register(path=path, parent=parent)
    progress(f"registered candidate {mv.pk} ({mv.checkpoint_sha256[:12]})")
    return mv


def _save(payload: dict, parent: ModelVersion) -> Path:
    """Write the checkpoint atomically under MODEL_DIR, named after its parent and the time."""
    base = parent.name.split("-ft", 1)[0]
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S-%f")
    name = f"{base}-ft{stamp}"[:100]
    return save_checkpoint(Path(settings.MODEL_DIR) / f"{name}.pt", {"name": name, **payload})
