import os
import time

import cv2
import numpy as np
import pytest

from ml.classes import CLASS_INDEX, EMOTIONS
from ml.data import (
    DatasetError,
    decode_image_file,
    load_dataset,
    load_fer_csv,
    load_image_folder,
)
from ml.preprocessing import to_gray
from tests.ml.conftest import write_image_folder


def test_image_folder_uses_canonical_label_order(pattern_folder):
    ds = load_image_folder(pattern_folder)
    assert len(ds) == 7 * 12
    assert ds.images.shape == (84, 48, 48) and ds.images.dtype == np.uint8
    # folders are listed alphabetically on disk, labels must still be FER2013's order
    for path, label in zip(ds.paths, ds.labels, strict=True):
        assert CLASS_INDEX[path.split("/")[0]] == label
    assert ds.class_counts == {e: 12 for e in EMOTIONS}


def test_subset_of_classes_and_other_sizes_and_colour(tmp_path):
    root = write_image_folder(tmp_path / "d", per_class=3, classes=("happy", "sad"))
    cv2.imwrite(str(root / "happy" / "big_colour.jpg"), np.full((100, 80, 3), 128, np.uint8))
    ds = load_image_folder(root)
    assert sorted(set(ds.labels.tolist())) == [CLASS_INDEX["happy"], CLASS_INDEX["sad"]]
    assert ds.images.shape[1:] == (48, 48) and len(ds) == 7


def test_unknown_class_folder_is_named(tmp_path):
    root = write_image_folder(tmp_path / "d", per_class=2, classes=("happy",))
    (root / "contempt").mkdir()
    with pytest.raises(DatasetError, match="unknown class folder .*contempt"):
        load_image_folder(root)


def test_empty_class_folder_is_named(tmp_path):
    root = write_image_folder(tmp_path / "d", per_class=2, classes=("happy",))
    (root / "sad").mkdir()
    with pytest.raises(DatasetError, match="empty class folder .*sad"):
        load_image_folder(root)


def test_missing_root_and_root_without_classes(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_image_folder(tmp_path / "nope")
    (tmp_path / "flat").mkdir()
    with pytest.raises(DatasetError, match="no class folders"):
        load_image_folder(tmp_path / "flat")


def test_unreadable_file_raises_with_path_or_is_counted(tmp_path):
    root = write_image_folder(tmp_path / "d", per_class=3, classes=("fear",))
    bad = root / "fear" / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(DatasetError, match="broken.jpg"):
        load_image_folder(root, cache=False)
    ds = load_image_folder(root, on_error="skip", cache=False)
    assert len(ds) == 3
    assert [p for p, _ in ds.skipped] == [str(bad)]


def test_a_cached_skipping_load_does_not_hide_unreadable_files_from_a_raising_one(tmp_path):
    root = write_image_folder(tmp_path / "d", per_class=3, classes=("fear",))
    (root / "fear" / "broken.jpg").write_bytes(b"not a jpeg at all")
    assert len(load_image_folder(root, on_error="skip")) == 3  # writes the cache
    with pytest.raises(DatasetError, match="unreadable image file: .*broken.jpg"):
        load_image_folder(root)
    assert len(load_image_folder(root, on_error="skip")) == 3  # the cache still serves skips


@pytest.mark.parametrize("shape", [(48, 48), (60, 50, 3)], ids=["gray", "bgr"])
def test_a_16_bit_png_decodes_as_its_8_bit_version(tmp_path, shape):
    # 16-bit pixels were clipped to 255, not scaled: every face came out nearly white
    img8 = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a8.png"), img8)
    cv2.imwrite(str(tmp_path / "a16.png"), img8.astype(np.uint16) * 257)
    assert cv2.imread(str(tmp_path / "a16.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    a16 = decode_image_file(tmp_path / "a16.png")
    np.testing.assert_array_equal(a16, decode_image_file(tmp_path / "a8.png"))


def test_float_pixels_in_0_1_are_scaled_and_non_finite_ones_refused():
    img8 = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_gray(img8 / 255.0), to_gray(img8))
    np.testing.assert_array_equal(to_gray(img8.astype(np.float32)), to_gray(img8))
    bad = np.full((48, 48), 0.5)
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        to_gray(bad)


def test_non_image_files_are_reported_not_loaded(tmp_path):
    root = write_image_folder(tmp_path / "d", per_class=2, classes=("angry",))
    (root / "angry" / "notes.txt").write_text("hello")
    ds = load_image_folder(root)
    assert len(ds) == 2
    assert ds.skipped[0][0].endswith("notes.txt")


def test_cache_is_reused_and_invalidated_by_changes(tmp_path):
    root = write_image_folder(tmp_path / "d", per_class=4, classes=("happy", "sad"))
    a = load_image_folder(root)
    cache_files = list((tmp_path / "cache").glob("*.npz"))
    assert len(cache_files) == 1
    b = load_image_folder(root)
    np.testing.assert_array_equal(a.images, b.images)
    f = root / "sad" / "sad_000.png"
    cv2.imwrite(str(f), np.zeros((48, 48), np.uint8))
    os.utime(f, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    c = load_image_folder(root)
    assert c.images[c.paths.index("sad/sad_000.png")].max() == 0


def _csv(path, rows, header="emotion,pixels,Usage"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_fer_csv_rows_usage_and_errors(tmp_path):
    px = " ".join(["7"] * 2304)
    f = _csv(tmp_path / "fer.csv", [f"3,{px},Training", f"6,{px},PublicTest", f"0,{px},Training"])
    ds = load_fer_csv(f)
    assert ds.labels.tolist() == [3, 6, 0] and ds.images.shape == (3, 48, 48)
    assert load_dataset(f"{f}:PublicTest").labels.tolist() == [6]
    bad = _csv(tmp_path / "bad.csv", [f"3,{px},Training", "2,1 2 3,Training"])
    with pytest.raises(DatasetError, match=r"bad.csv:3: 3 pixels, expected 2304"):
        load_fer_csv(bad)
    assert len(load_fer_csv(bad, on_error="skip")) == 1
    with pytest.raises(DatasetError, match="out of range"):
        load_fer_csv(_csv(tmp_path / "lab.csv", [f"9,{px},Training"]))
    with pytest.raises(DatasetError, match="missing column"):
        load_fer_csv(_csv(tmp_path / "col.csv", ["3"], header="emotion"))
    with pytest.raises(DatasetError, match="unknown usage"):
        load_fer_csv(f, usage="Test")


def test_a_csv_that_is_not_utf8_is_a_dataset_error(tmp_path, capsys):
    from ml.cli import main

    bad = tmp_path / "latin1.csv"
    bad.write_bytes("emotion,pixels\n3,é 1 2\n".encode("latin-1"))
    with pytest.raises(DatasetError, match="latin1.csv: not UTF-8 text"):
        load_fer_csv(bad, on_error="skip")
    # train and calibrate report it as one line (it was a UnicodeDecodeError traceback)
    assert main(["train", "--data", str(bad), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert main(["calibrate", str(bad), "--out", str(tmp_path / "c.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("latin1.csv: not UTF-8 text") == 2 and "Traceback" not in err


def test_real_fer2013_validation_split_counts(fer_val):
    assert len(fer_val) == 3589
    assert fer_val.class_counts == {
        "angry": 467,
        "disgust": 56,
        "fear": 496,
        "happy": 895,
        "sad": 653,
        "surprise": 415,
        "neutral": 607,
    }


def test_fer2013_train_split_loads_in_seconds(fer_root):
    t0 = time.perf_counter()
    ds = load_image_folder(fer_root / "train")
    print(f"decoded 28,709 images: {time.perf_counter() - t0:.2f}s")
    assert len(ds) == 28709
    assert ds.class_counts["disgust"] == 436
    t0 = time.perf_counter()
    again = load_image_folder(fer_root / "train")
    print(f"cached reload of 28,709 images: {time.perf_counter() - t0:.2f}s")
    assert len(again) == 28709
