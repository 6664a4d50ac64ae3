"""The fine-tune service, command and task: the dataset from reviewed crops only, split by
learner, the candidate registered under MODEL_DIR with the active version as its parent, and a
clear refusal when there is too little to train on."""

from __future__ import annotations

import cv2
import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from emotion.finetuning import model_finetune, reviewed_dataset
from emotion.models import ModelVersion
from emotion.registry import model_version_bootstrap
from emotion.tasks import finetune_model
from ml.classes import EMOTIONS
from ml.finetune import FinetuneConfig
from ml.predictor import DEFAULT_WEIGHTS
from tests.factories import LearnerSessionFactory, ReadingFactory

TINY = {"epochs": 1, "batch_size": 16, "replay": 0, "device": "cpu"}


@pytest.fixture
def reviewed(classroom, fer_val, settings, fer_root, tmp_path):
    """12 reviewed crops from each of two learners (real FER2013 faces as PNG), plus readings
    that must not be trained on: not reviewed, and reviewed without a crop."""
    settings.FER2013_ROOT, settings.MODEL_DIR = fer_root, tmp_path / "models"
    ben = classroom.other_learner
    sessions = [
        classroom.session,
        LearnerSessionFactory(learner=ben, course=classroom.course, consent=ben.consents.get()),
    ]
    for k, session in enumerate(sessions):
        for i in range(12):
            img = fer_val.images[k * 12 + i]
            label = EMOTIONS[int(fer_val.labels[k * 12 + i])]
            ReadingFactory(
                session=session,
                face_crop=cv2.imencode(".png", img)[1].tobytes(),
                reviewed_label=label,
            )
    ReadingFactory(session=sessions[0], face_crop=cv2.imencode(".png", img)[1].tobytes())
    ReadingFactory(session=sessions[0], reviewed_label="happy")
    return sessions


def test_the_dataset_is_the_reviewed_crops_grouped_by_learner(reviewed, fer_val):
    crops, labels, groups = reviewed_dataset()
    assert crops.shape == (24, 48, 48) and crops.dtype.name == "uint8"
    assert (crops[0] == fer_val.images[0]).all()  # PNG is lossless
    assert len(labels) == 24 and sorted(set(groups)) == sorted(s.learner_id for s in reviewed)


def test_a_finetune_registers_a_candidate_of_the_active_version(reviewed, settings):
    active = model_version_bootstrap(path=DEFAULT_WEIGHTS)
    said = []
    mv = model_finetune(
        config=FinetuneConfig(**TINY), fer_val_limit=50, min_crops=10, progress=said.append
    )
    assert mv.status == ModelVersion.Status.CANDIDATE and mv.parent_id == active.pk
    assert mv.path.startswith(str(settings.MODEL_DIR)) and mv.name.startswith("compact-ft")
    assert mv.recipe["parent"]["sha256"] == active.checkpoint_sha256
    assert mv.metrics["reviewed_test"]["n"] == 12 and mv.metrics["reviewed_test"]["learners"] == 1
    assert mv.metrics["fer2013_val"]["n"] == 50
    assert said[0] == "dataset: 24 reviewed crops from 2 learners" and "registered" in said[-1]
    assert [p.name for p in settings.MODEL_DIR.iterdir()] == [mv.path.rsplit("/", 1)[1]]


def test_too_few_crops_or_learners_is_refused_with_the_reason(reviewed, capsys):
    with pytest.raises(ValidationError, match="24 reviewed crop.* at least 30 crops"):
        model_finetune(config=FinetuneConfig(**TINY), min_crops=30)
    reviewed[1].readings.all().delete()  # one learner left
    with pytest.raises(CommandError, match="from 1 learner.*at least 2 learners"):
        call_command("model_finetune", "--epochs", "1", "--min-crops", "5")
    assert "dataset: 12 reviewed crops from 1 learners" in capsys.readouterr().out


def test_the_task_takes_a_few_settings_and_returns_the_candidate(reviewed):
    model_version_bootstrap(path=DEFAULT_WEIGHTS)
    out = finetune_model.apply(kwargs={"config": TINY, "fer_val_limit": 50}).get()
    mv = ModelVersion.objects.get(pk=out["id"])
    assert out == {"id": mv.pk, "sha256": mv.checkpoint_sha256, "status": "candidate"}
    reviewed[1].readings.all().delete()
    with pytest.raises(ValidationError, match="at least 20 crops"):  # the service's default
        finetune_model.apply(kwargs={"config": TINY}).get()
