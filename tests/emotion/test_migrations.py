"""Migrations: they match the models, and emotion 0004 (model version precision) unapplies
cleanly or refuses with its reason, on the test database (PostgreSQL in CI)."""

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("emotion", "0003_reading_error")]
WITH_PRECISION = [("emotion", "0004_model_version_precision")]


@pytest.mark.django_db
def test_models_need_no_new_migration():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)  # exits 1 if they do


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def back_to_latest():
    yield
    call_command("migrate", verbosity=0)  # the schema the other tests expect


@pytest.mark.django_db(transaction=True)
def test_precision_migration_unapplies_when_each_checkpoint_has_one_version(back_to_latest):
    apps = _migrate(WITH_PRECISION)
    ModelVersion = apps.get_model("emotion", "ModelVersion")
    ModelVersion.objects.create(name="a", checkpoint_sha256="a" * 64, precision="int8")
    ModelVersion.objects.create(name="b", checkpoint_sha256="b" * 64, precision="fp32")
    apps = _migrate(BEFORE)
    old = apps.get_model("emotion", "ModelVersion")
    assert sorted(old.objects.values_list("name", flat=True)) == ["a", "b"]
    assert "precision" not in {f.name for f in old._meta.get_fields()}


@pytest.mark.django_db(transaction=True)
def test_precision_migration_refuses_to_merge_two_precisions_of_a_checkpoint(back_to_latest):
    apps = _migrate(WITH_PRECISION)
    ModelVersion = apps.get_model("emotion", "ModelVersion")
    for precision in ("fp32", "int8"):
        ModelVersion.objects.create(name="x", checkpoint_sha256="c" * 64, precision=precision)
    with pytest.raises(RuntimeError, match="1 checkpoint.*both precisions"):
        _migrate(BEFORE)
    apps = MigrationExecutor(connection).loader.project_state(WITH_PRECISION).apps
    kept = apps.get_model("emotion", "ModelVersion").objects.order_by("precision")
    assert list(kept.values_list("precision", flat=True)) == ["fp32", "int8"]  # nothing lost


@pytest.mark.django_db(transaction=True)
def test_crops_without_an_estimated_expression_are_deleted_by_migration(back_to_latest):
    from tests.factories import LearnerSessionFactory, probs_for

    # the readings table as it was at 0007 (same schema as 0008: data-only); today's model
    # has columns added later, so rows are written through the historical model
    apps = _migrate([("emotion", "0007_reading_lost_runs")])
    Reading = apps.get_model("emotion", "Reading")
    emotion = LearnerSessionFactory(emotion_enabled=True)
    engagement_only = LearnerSessionFactory(emotion_enabled=False)

    def reading(session, sequence, probs):
        t = session.started_at
        return Reading.objects.create(
            session_id=session.pk, sequence=sequence, captured_at=t, received_at=t,
            analysed_at=t, face_found=True, probs=probs, face_crop=b"png",
            label=max(probs, key=probs.get) if probs else None,
        )  # fmt: skip

    kept = reading(emotion, 0, probs_for("neutral"))
    dropped = reading(engagement_only, 0, None)
    assert kept.label and dropped.label is None
    apps = _migrate([("emotion", "0008_drop_crops_without_estimated_expression")])
    Reading = apps.get_model("emotion", "Reading")
    assert bytes(Reading.objects.get(pk=kept.pk).face_crop) == b"png"
    assert Reading.objects.get(pk=dropped.pk).face_crop is None
