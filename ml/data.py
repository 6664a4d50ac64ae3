"""Datasets: the image-folder layout and FER2013's original CSV, decoded into uint8 arrays.

Both loaders return a :class:`FaceDataset` whose labels use the canonical order of
:data:`ml.classes.EMOTIONS`, whatever order or subset of class folders is on disk. Decoded
image folders are cached as ``.npz`` (keyed by every file's path, size and mtime) so the
28,709-image train split reloads in well under a second.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ml.classes import CLASS_INDEX, EMOTIONS
from ml.preprocessing import resize_crop, to_gray

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".pgm"}
FER_USAGES = ("Training", "PublicTest", "PrivateTest")
CACHE_VERSION = 2  # 2: 16-bit and float images scaled, not clipped


class DatasetError(ValueError):
    """A dataset cannot be read as asked; the message names the offending path or line."""


@dataclass
class FaceDataset:
    images: np.ndarray  # uint8, N×S×S
    labels: np.ndarray  # int64, N, canonical class indices
    paths: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    source: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def class_counts(self) -> dict[str, int]:
        counts = Counter(int(x) for x in self.labels)
        return {EMOTIONS[i]: counts[i] for i in sorted(counts)}

    @property
    def classes_present(self) -> list[int]:
        return sorted({int(x) for x in self.labels})


def default_cache_dir() -> Path:
    return Path(os.environ.get("ML_CACHE_DIR", Path.home() / ".cache" / "affect-ml"))


def _list_image_folder(root: Path) -> tuple[list[tuple[Path, int]], list[tuple[str, str]]]:
    if not root.exists():
        raise DatasetError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise DatasetError(f"not a folder: {root} (expected <root>/<emotion>/*.jpg)")
    entries: list[tuple[Path, int]] = []
    ignored: list[tuple[str, str]] = []
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DatasetError(
            f"no class folders in {root}: expected sub-folders named after emotions {list(EMOTIONS)}"
        )
    for d in class_dirs:
        name = d.name.lower()
        if name not in CLASS_INDEX:
            raise DatasetError(
                f"unknown class folder {d}: folder names must be one of {list(EMOTIONS)}"
            )
        files = sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))
        images, other = [], []
        for p in files:  # one pass: a membership test against the list was quadratic
            (images if p.suffix.lower() in IMAGE_EXTENSIONS else other).append(p)
        ignored += [(str(p), "not an image file extension") for p in other]
        if not images:
            raise DatasetError(f"empty class folder {d}: no image files in it")
        entries += [(p, CLASS_INDEX[name]) for p in images]
    return entries, ignored


def _cache_key(root: Path, entries: list[tuple[Path, int]], size: int) -> str:
    h = hashlib.sha1(f"v{CACHE_VERSION}|{root.resolve()}|{size}".encode())
    for p, label in entries:
        st = p.stat()
        h.update(f"{p.relative_to(root)}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def decode_image_file(path: Path, size: int = 48) -> np.ndarray:
    """Read one face image as a size×size uint8 grayscale array; DatasetError if unreadable."""
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise DatasetError(f"unreadable image file: {path}")
    try:
        return resize_crop(to_gray(img), size)
    except ValueError as e:  # an unsupported channel count, NaN pixels
        raise DatasetError(f"unusable image file: {path}: {e}") from None


def load_image_folder(
    root: str | os.PathLike,
    *,
    size: int = 48,
    on_error: str = "raise",
    cache: bool = True,
    progress: bool = False,
) -> FaceDataset:
    """Load ``<root>/<emotion>/*.{jpg,png,...}``.

    on_error: ``"raise"`` (default) stops at the first unreadable file with its path;
    ``"skip"`` leaves it out and records it in ``dataset.skipped``.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError("on_error must be 'raise' or 'skip'")
    root = Path(root)
    entries, ignored = _list_image_folder(root)
    cache_file = None
    if cache:
        cache_file = default_cache_dir() / f"imagefolder-{_cache_key(root, entries, size)}.npz"
        if cache_file.exists():
            try:
                z = np.load(cache_file, allow_pickle=False)
                skipped = [tuple(s.split("\t", 1)) for s in z["skipped"].tolist()]
                ds = FaceDataset(
                    z["images"], z["labels"], z["paths"].tolist(), ignored + skipped, str(root)
                )
            except Exception:  # corrupt cache: rebuild it
                cache_file.unlink(missing_ok=True)
            else:
                # a cache written by a skipping load holds no trace of its unreadable files
                # but this list: a raising load stops at the first, as a fresh decode would
                if skipped and on_error == "raise":
                    raise DatasetError(skipped[0][1])
                return ds
    images = np.empty((len(entries), size, size), dtype=np.uint8)
    labels = np.empty(len(entries), dtype=np.int64)
    paths: list[str] = []
    skipped: list[tuple[str, str]] = []
    it = entries
    if progress:
        from tqdm import tqdm

        it = tqdm(entries, desc=f"decoding {root.name}", unit="img", leave=False)
    n = 0
    for p, label in it:
        try:
            images[n] = decode_image_file(p, size)
        except DatasetError as e:
            if on_error == "raise":
                raise
            skipped.append((str(p), str(e)))
            continue
        labels[n] = label
        paths.append(str(p.relative_to(root)))
        n += 1
    ds = FaceDataset(images[:n].copy(), labels[:n].copy(), paths, ignored + skipped, str(root))
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(
            tmp,
            images=ds.images,
            labels=ds.labels,
            paths=np.array(paths, dtype=str),
            skipped=np.array([f"{a}\t{b}" for a, b in skipped], dtype=str),
        )
        os.replace(tmp, cache_file)
    return ds


def load_fer_csv(
    path: str | os.PathLike, *, usage: str | None = None, on_error: str = "raise"
) -> FaceDataset:
    """Load Kaggle's ``fer2013.csv`` (columns ``emotion,pixels[,Usage]``), optionally one split."""
    path = Path(path)
    if usage is not None and usage not in FER_USAGES:
        raise DatasetError(f"unknown usage {usage!r}: expected one of {list(FER_USAGES)}")
    if not path.is_file():
        raise DatasetError(f"CSV file not found: {path}")
    try:
        return _read_fer_csv(path, usage, on_error)
    except UnicodeDecodeError as e:  # a whole-file problem: on_error="skip" cannot help
        raise DatasetError(
            f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); is it really a CSV?"
        ) from None


def _read_fer_csv(path: Path, usage: str | None, on_error: str) -> FaceDataset:
    images, labels, rows, skipped = [], [], [], []
    with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's BOM
        reader = csv.DictReader(f)
        missing = {"emotion", "pixels"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path}: missing column(s) {sorted(missing)} in header")
        for lineno, row in enumerate(reader, start=2):
            if usage is not None and row.get("Usage") != usage:
                continue
            where = f"{path}:{lineno}"
            try:
                label = int(row["emotion"])
                if not 0 <= label < len(EMOTIONS):
                    raise DatasetError(f"{where}: emotion {label} out of range 0..6")
                px = np.array(row["pixels"].split(), dtype=np.int64)
                if px.size != 48 * 48:
                    raise DatasetError(f"{where}: {px.size} pixels, expected 2304 (48×48)")
                if px.min() < 0 or px.max() > 255:
                    raise DatasetError(f"{where}: pixel values outside 0..255")
            except (ValueError, TypeError) as e:
                err = e if isinstance(e, DatasetError) else DatasetError(f"{where}: {e}")
                if on_error == "raise":
                    raise err from None
                skipped.append((where, str(err)))
                continue
            images.append(px.astype(np.uint8).reshape(48, 48))
            labels.append(label)
            rows.append(f"line {lineno}")
    if not images:
        raise DatasetError(f"{path}: no rows" + (f" with Usage={usage}" if usage else ""))
    return FaceDataset(np.stack(images), np.array(labels, dtype=np.int64), rows, skipped, str(path))


def load_dataset(spec: str | os.PathLike, **kwargs) -> FaceDataset:
    """A folder → image-folder layout; ``file.csv`` or ``file.csv:PublicTest`` → FER2013 CSV."""
    s = str(spec)
    usage = None
    if ".csv:" in s:
        s, usage = s.rsplit(":", 1)
    if s.lower().endswith(".csv"):
        return load_fer_csv(s, usage=usage, on_error=kwargs.get("on_error", "raise"))
    return load_image_folder(s, **kwargs)
