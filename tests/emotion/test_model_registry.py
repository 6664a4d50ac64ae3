"""The model registry: registering, the promotion check (tolerance, reviewed slice, minimum
size, parent), rollback, and which version a batch records when the active one changes."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from emotion import registry
from emotion.inference import get_predictor
from emotion.models import ModelVersion, Reading
from emotion.registry import (
    active_model_version,
    model_version_promote,
    model_version_register,
    model_version_rollback,
)
from emotion.services import IncomingFrame, frames_accept, readings_analyse
from ml.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from ml.predictor import DEFAULT_WEIGHTS

Status = ModelVersion.Status


def figures(fer_parent, fer_child, rev_parent, rev_child, n_reviewed=40) -> dict:
    """Checkpoint metrics as the fine-tune records them: parent and child on the same data."""
    return {
        "fer2013_val": {
            "parent": {"accuracy": fer_parent},
            "child": {"accuracy": fer_child},
            "n": 200,
        },
        "reviewed_test": {
            "parent": {"accuracy": rev_parent},
            "child": {"accuracy": rev_child},
            "n": n_reviewed,
        },
    }


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint(DEFAULT_WEIGHTS)


@pytest.fixture
def checkpoint(shipped, tmp_path):
    """Write a copy of the shipped checkpoint with other metrics (so another sha256)."""

    def make(name: str, metrics: dict | None = None, recipe: dict | None = None):
        payload = {k: v for k, v in shipped.items() if k not in ("format", "format_version")}
        recipe = recipe or {"command": f"test {name}"}
        payload.update(name=name, metrics=metrics or {}, recipe=recipe)
        return save_checkpoint(tmp_path / f"{name}.pt", payload)

    return make


@pytest.fixture
def active(db, django_capture_on_commit_callbacks):
    """The shipped checkpoint, active (as a fresh install's first batch makes it)."""
    with django_capture_on_commit_callbacks(execute=True):
        return registry.model_version_bootstrap(path=DEFAULT_WEIGHTS)


@pytest.fixture
def candidate(active, checkpoint):
    def make(*fig, name="child", parent=None):
        path = checkpoint(name, figures(*fig))
        return model_version_register(path=path, parent=parent or active)

    return make


def promote(version, **kw):
    return model_version_promote(version=version, **kw)


def test_register_reads_the_checkpoint_once_per_file(db, checkpoint, shipped):
    path = checkpoint("one", figures(0.6, 0.61, 0.5, 0.7))
    mv = model_version_register(path=path)
    assert mv.checkpoint_sha256 == file_sha256(path) and mv.name == "one"
    assert mv.status == Status.CANDIDATE and mv.path == str(path)
    assert mv.recipe == {"command": "test one"} and mv.metrics["reviewed_test"]["n"] == 40
    # the precision CPU workers run it in: the shipped checkpoint carries an int8 network
    assert mv.precision == ("int8" if shipped.get("int8") else "fp32")
    assert model_version_register(path=path).pk == mv.pk
    assert ModelVersion.objects.count() == 1


def test_a_file_fine_tuned_elsewhere_is_registered_with_the_parent_it_names(active, checkpoint):
    recipe = {"command": "finetune", "parent": {"sha256": active.checkpoint_sha256}}
    mv = model_version_register(path=checkpoint("cli", recipe=recipe))
    assert mv.parent_id == active.pk and mv.status == Status.CANDIDATE


def test_a_fresh_install_runs_ml_weights_as_the_active_version(db, classroom, face_frames):
    assert active_model_version() is None
    ids = frames_accept(
        session=classroom.session, enqueue=False, frames=[IncomingFrame(face_frames[0])]
    ).reading_ids
    readings_analyse(reading_ids=ids)
    mv = Reading.objects.get(pk=ids[0]).model_version
    assert mv.status == Status.ACTIVE and mv.checkpoint_sha256 == file_sha256(DEFAULT_WEIGHTS)
    assert mv.decision["outcome"] == "activated" and mv.decision["checked"] is False
    assert active_model_version().checkpoint_sha256 == mv.checkpoint_sha256


def test_a_better_candidate_is_promoted_and_the_old_one_retired(candidate, active):
    c = promote(candidate(0.68, 0.675, 0.50, 0.60))
    assert c.status == Status.ACTIVE and c.promoted_at is not None
    d = c.decision
    assert d["outcome"] == "promoted" and d["tolerance"] == 0.01
    assert d["figures"]["fer_val"] == {"active": 0.68, "candidate": 0.675, "n": 200}
    assert d["figures"]["reviewed"] == {"active": 0.50, "candidate": 0.60, "n": 40}
    assert d["against"] == active.checkpoint_sha256
    active.refresh_from_db()
    assert active.status == Status.RETIRED and active.retired_at is not None
    assert ModelVersion.objects.filter(status=Status.ACTIVE).count() == 1


@pytest.mark.parametrize(
    ("fig", "why"),
    [
        ((0.68, 0.66, 0.50, 0.60), "beyond the tolerance 0.01"),
        ((0.68, 0.69, 0.60, 0.60), "is not better than the active version's 0.6000"),
        ((0.68, 0.69, 0.50, 0.60, 10), "fewer than the 30 (MODEL_PROMOTION_MIN_REVIEWED)"),
    ],
)
def test_a_candidate_that_does_not_measure_better_is_refused(candidate, active, fig, why):
    c = promote(candidate(*fig))
    assert c.status == Status.REFUSED and why in c.decision["reason"]
    assert c.decision["outcome"] == "refused" and c.promoted_at is None
    assert active_model_version().pk == active.pk


def test_the_tolerance_and_force_decide_the_same_candidate_differently(candidate, active):
    c = candidate(0.68, 0.66, 0.50, 0.60)  # 2 points worse on FER2013 validation
    assert promote(c).status == Status.REFUSED
    c = promote(c, tolerance=0.03)  # a refused candidate can be judged again
    assert c.status == Status.ACTIVE and c.decision["tolerance"] == 0.03


def test_force_records_the_refusal_it_overrode(candidate, active, checkpoint):
    stray = model_version_register(path=checkpoint("stray", figures(0.6, 0.7, 0.5, 0.9)))
    refused = promote(stray)
    assert (
        refused.status == Status.REFUSED
        and "not from the active version" in (refused.decision["reason"])
    )
    forced = promote(stray, force=True)
    assert forced.status == Status.ACTIVE and forced.decision["outcome"] == "forced"


def test_a_candidate_of_an_older_parent_is_not_judged_against_the_new_active(candidate, active):
    first = promote(candidate(0.68, 0.68, 0.5, 0.6, name="first"))
    late = candidate(0.68, 0.69, 0.5, 0.7, name="late", parent=active)  # from the old one
    late = promote(late)
    assert late.status == Status.REFUSED
    assert f"not from the active version {first.checkpoint_sha256[:12]}" in late.decision["reason"]


def test_promoting_the_active_version_is_an_error(active):
    with pytest.raises(ValidationError, match="is active"):
        promote(active)


def test_rollback_returns_to_the_version_active_before(candidate, active):
    with pytest.raises(ValidationError, match="no earlier one"):
        model_version_rollback()
    b = promote(candidate(0.68, 0.68, 0.5, 0.6, name="b"))
    c = promote(candidate(0.68, 0.68, 0.6, 0.7, name="c", parent=b))
    assert c.status == Status.ACTIVE
    assert model_version_rollback().pk == b.pk
    c.refresh_from_db()
    assert c.status == Status.ROLLED_BACK and c.retired_at is not None
    assert model_version_rollback().pk == active.pk  # and back once more
    statuses = dict(ModelVersion.objects.values_list("name", "status"))
    assert statuses["b"] == Status.ROLLED_BACK and statuses["c"] == Status.ROLLED_BACK
    with pytest.raises(ValidationError, match="no earlier one"):
        model_version_rollback()


def test_rollback_with_nothing_active_is_an_error(db):
    with pytest.raises(ValidationError, match="nothing is active"):
        model_version_rollback()


def test_rows_of_one_checkpoint_share_its_status(active, candidate):
    other = "fp32" if active.precision == "int8" else "int8"
    sibling = registry.model_version_sibling(
        sha=active.checkpoint_sha256, precision=other, name="x", metrics={}
    )
    assert sibling.pk != active.pk and sibling.status == Status.ACTIVE
    promote(candidate(0.68, 0.68, 0.5, 0.6))
    assert set(
        ModelVersion.objects.filter(checkpoint_sha256=active.checkpoint_sha256).values_list(
            "status", flat=True
        )
    ) == {Status.RETIRED}


def test_commands_print_the_decision_and_fail_when_refused(candidate, active, capsys):
    bad = candidate(0.68, 0.60, 0.5, 0.6, name="bad")
    with pytest.raises(CommandError, match="refused: FER2013 validation accuracy"):
        call_command("model_promote", str(bad.pk))
    good = candidate(0.68, 0.68, 0.5, 0.6, name="good")
    call_command("model_promote", str(good.pk))
    call_command("model_versions")
    out = capsys.readouterr().out
    assert "promoted: FER2013 validation 0.6800 against 0.6800" in out
    lines = {line.split()[1]: line.split() for line in out.splitlines() if line[:1].isdigit()}
    assert lines["good"][3] == "active" and lines["bad"][3] == "refused"
    assert lines["good"][4] == active.checkpoint_sha256[:12]
    with pytest.raises(CommandError, match="no model version 999999"):
        call_command("model_promote", "999999")
    call_command("model_rollback")
    assert active_model_version().pk == active.pk


def test_model_register_activate_pins_a_version(db, checkpoint, capsys):
    path = checkpoint("pinned")
    call_command("model_register", str(path), "--activate")
    mv = active_model_version()
    assert mv.name == "pinned" and mv.decision["reason"].startswith("pinned by an operator")
    with pytest.raises(CommandError, match="checkpoint not found"):
        call_command("model_register", str(path) + ".missing")


@pytest.mark.django_db(transaction=True)
def test_a_batch_finishes_on_the_version_it_started_with(
    classroom, face_frames, checkpoint, monkeypatch
):
    """Promotion lands while a batch is running: that batch records the old version, the next
    one runs (and records) the new one, in the same process, with no restart."""
    import emotion.services

    old = registry.model_version_bootstrap(path=DEFAULT_WEIGHTS)
    new = model_version_register(path=checkpoint("new", figures(0.68, 0.68, 0.5, 0.6)), parent=old)
    real_predict, promoted = emotion.services._predict, []

    def predict_then_promote(predictor, *args):
        if not promoted:  # the batch has its predictor: the promotion lands now
            promoted.append(model_version_promote(version=new))
        return real_predict(predictor, *args)

    monkeypatch.setattr(emotion.services, "_predict", predict_then_promote)

    def batch(i):
        ids = frames_accept(
            session=classroom.session, enqueue=False, frames=[IncomingFrame(face_frames[i])]
        ).reading_ids
        readings_analyse(reading_ids=ids)
        return Reading.objects.get(pk=ids[0]).model_version

    assert batch(0).checkpoint_sha256 == old.checkpoint_sha256
    assert promoted[0].status == Status.ACTIVE
    assert batch(1).checkpoint_sha256 == new.checkpoint_sha256
    assert get_predictor().sha256 == new.checkpoint_sha256


def test_the_admin_lists_versions_and_promotes_through_the_check(candidate, active, admin_client):
    bad = candidate(0.68, 0.60, 0.5, 0.6, name="bad")
    good = candidate(0.68, 0.68, 0.5, 0.6, name="good")
    page = admin_client.get("/admin/emotion/modelversion/").content.decode()
    assert "bad" in page and "0.6000" in page and active.checkpoint_sha256[:12] in page
    url = "/admin/emotion/modelversion/"
    r = admin_client.post(url, {"action": "promote", "_selected_action": [bad.pk]}, follow=True)
    said = [str(m) for m in r.context["messages"]]
    assert said[0].startswith("refused: FER2013 validation accuracy 0.6000 is 0.0800 below")
    admin_client.post(url, {"action": "promote", "_selected_action": [good.pk]})
    good.refresh_from_db()
    assert good.status == Status.ACTIVE
    detail = admin_client.get(f"{url}{good.pk}/change/").content.decode()
    assert "&quot;outcome&quot;: &quot;promoted&quot;" in detail  # the decision, as JSON
    assert 'name="status"' not in detail and 'name="name"' not in detail  # read-only
    r = admin_client.post(url, {"action": "roll_back", "_selected_action": [good.pk]}, follow=True)
    assert [str(m) for m in r.context["messages"]][0].endswith("is active again")
    assert active_model_version().pk == active.pk


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_cannot_read_the_promoted_file_keeps_its_version(
    classroom, face_frames, checkpoint, caplog
):
    """The promoted checkpoint is not on this worker's disk (MODEL_DIR not shared): batches go
    on with the version it has loaded, record that one, and log why."""
    from emotion.inference import reset_predictor

    reset_predictor()
    old = registry.model_version_bootstrap(path=DEFAULT_WEIGHTS)
    path = checkpoint("elsewhere", figures(0.68, 0.68, 0.5, 0.6))
    new = model_version_register(path=path, parent=old)

    def batch(i):
        ids = frames_accept(
            session=classroom.session, enqueue=False, frames=[IncomingFrame(face_frames[i])]
        ).reading_ids
        readings_analyse(reading_ids=ids)
        return Reading.objects.get(pk=ids[0]).model_version.checkpoint_sha256

    assert batch(0) == old.checkpoint_sha256
    assert model_version_promote(version=new).status == Status.ACTIVE
    path.unlink()
    assert batch(1) == old.checkpoint_sha256
    assert "cannot load the active model" in caplog.text
