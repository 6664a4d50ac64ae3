import pytest
import torch

from ml.checkpoint import CheckpointError, build_model, load_checkpoint, save_checkpoint
from ml.predictor import Predictor, default_weights


def test_shipped_checkpoint_is_complete():
    ck = load_checkpoint(default_weights())
    for key in (
        "model_config",
        "class_names",
        "preprocessing",
        "recipe",
        "metrics",
        "format_version",
    ):
        assert key in ck
    assert "python -m ml train" in ck["recipe"]["command"]


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        Predictor(bad)
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(default_weights().read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(truncated)
    # a zip that is no torch archive: torch's several lines of advice become one line
    import zipfile

    with zipfile.ZipFile(tmp_path / "zip.pt", "w") as z:
        z.writestr("x/data.pkl", b"garbage")
    for path in (bad, truncated, tmp_path / "zip.pt"):
        with pytest.raises(CheckpointError, match="corrupt or unreadable") as e:
            load_checkpoint(path)
        assert "\n" not in str(e.value), str(e.value)


def test_foreign_and_mismatched_files(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an affect-ml-checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    ck = load_checkpoint(default_weights())
    save_checkpoint(tmp_path / "classes.pt", {**ck, "class_names": ["a", "b"]})
    with pytest.raises(CheckpointError, match="class names"):
        load_checkpoint(tmp_path / "classes.pt")
    cfg = dict(ck["model_config"], widths=[8, 8, 8, 8])
    save_checkpoint(tmp_path / "cfg.pt", {**ck, "model_config": cfg})
    with pytest.raises(CheckpointError, match="do not match"):
        build_model(load_checkpoint(tmp_path / "cfg.pt"))
    save_checkpoint(tmp_path / "ver.pt", {k: v for k, v in ck.items() if k != "format_version"})
    data = torch.load(tmp_path / "ver.pt", weights_only=False)
    data["format_version"] = 99
    torch.save(data, tmp_path / "ver.pt")
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(tmp_path / "ver.pt")


def test_save_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "ck.pt"
    save_checkpoint(target, {"x": 1})
    before = target.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(target, {"x": 2})
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_threads_loading_at_once_all_succeed():
    """A web process's first requests load the checkpoint in several threads at once: a
    process-wide allow-list toggled per load made some of them fail as "unreadable"."""
    from concurrent.futures import ThreadPoolExecutor

    path = default_weights().parent / "fer-fast.pt"
    with ThreadPoolExecutor(8) as pool:
        loaded = list(pool.map(lambda _: load_checkpoint(path)["class_names"], range(24)))
    assert len(loaded) == 24 and all(tuple(c) == tuple(loaded[0]) for c in loaded)
