from pathlib import Path

import cv2
import numpy as np
import pytest

from ml.classes import EMOTIONS


def pattern_image(label: int, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A class-distinct image: a bright square whose position encodes the label, plus noise."""
    img = rng.normal(90, 20, (size, size))
    r, c = divmod(label, 3)
    y, x = 4 + r * 14 + int(rng.integers(-2, 3)), 4 + c * 14 + int(rng.integers(-2, 3))
    img[y : y + 12, x : x + 12] += 120
    return np.clip(img, 0, 255).astype(np.uint8)


def write_image_folder(
    root: Path, per_class: int = 10, classes=EMOTIONS, seed: int = 0, ext: str = ".png"
) -> Path:
    rng = np.random.default_rng(seed)
    for name in classes:
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cv2.imwrite(str(d / f"{name}_{i:03d}{ext}"), pattern_image(EMOTIONS.index(name), rng))
    return root


@pytest.fixture
def pattern_folder(tmp_path) -> Path:
    return write_image_folder(tmp_path / "patterns", per_class=12)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Tests that build their own folders get a private decode cache."""
    monkeypatch.setenv("ML_CACHE_DIR", str(tmp_path / "cache"))
