"""The process-wide predictors (web in embedded mode, or worker): the registry's active version,
picked up without a restart.

Each batch asks which checkpoint is active (one cache read, see ``emotion.registry``) and
gets its predictor, loaded once per process and kept with the one before it, so a promotion or
a rollback is picked up by the next batch while a batch already running finishes on the
predictor it took.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from django.conf import settings

from ml.checkpoint import CheckpointError
from ml.predictor import Predictor, default_weights

logger = logging.getLogger(__name__)

#: loaded predictors by checkpoint sha256, the latest used last
_loaded: OrderedDict[str, Predictor] = OrderedDict()
_lock = threading.Lock()
#: how many loaded checkpoints a process keeps (the active one and the one before it)
KEEP = 2


def get_predictor() -> Predictor:
    """The predictor of the active version, loading it when the active version changed. On a
    fresh install (nothing active) ``settings.ML_WEIGHTS`` is registered as the active one."""
    from emotion.registry import active_model_ref, model_version_bootstrap

    ref = active_model_ref()
    if ref is None:
        mv = model_version_bootstrap(path=settings.ML_WEIGHTS or default_weights())
        ref = {"sha": mv.checkpoint_sha256, "path": mv.path}
    predictor = _loaded.get(ref["sha"])
    if predictor is not None:
        return predictor
    with _lock:
        if ref["sha"] not in _loaded:
            try:
                _loaded[ref["sha"]] = _load(ref["path"])
            except CheckpointError:
                if not _loaded:
                    raise
                # MODEL_DIR not mounted here, or a file removed: keep analysing with the
                # version this process has (readings record it), and say so every batch
                logger.exception("cannot load the active model %s: running the last one", ref)
                return next(reversed(_loaded.values()))
            while len(_loaded) > KEEP:
                _loaded.popitem(last=False)
        _loaded.move_to_end(ref["sha"])
        return _loaded[ref["sha"]]


def _load(path: str) -> Predictor:
    return Predictor(path, device=settings.ML_DEVICE, precision=settings.ML_PRECISION)


def reset_predictor() -> None:
    """Forget the loaded models (tests; a process that must read its checkpoints again)."""
    with _lock:
        _loaded.clear()
