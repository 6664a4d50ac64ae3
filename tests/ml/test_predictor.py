import threading

import numpy as np
import pytest

from ml import predictor as predictor_module
from ml.classes import EMOTIONS
from ml.faces import FoundFace
from ml.predictor import Predictor, TemporalSmoother
from ml.synth import scene


@pytest.fixture(scope="module")
def predictor():
    return Predictor()


def test_single_vs_batch_agree(predictor, fer_val):
    crops = fer_val.images[:40]
    batch = predictor.predict_faces(crops)
    single = np.concatenate([predictor.predict_faces(crops[i : i + 1]) for i in range(40)])
    np.testing.assert_allclose(batch, single, atol=1e-5)
    assert batch.shape == (40, 7)
    np.testing.assert_allclose(batch.sum(1), 1.0, atol=1e-5)
    # a list of differently sized crops is resized with the eval preset
    listed = predictor.predict_faces([np.kron(c, np.ones((2, 2), np.uint8)) for c in crops[:4]])
    assert listed.shape == (4, 7)


def test_predict_frame_labels_faces(predictor, fer_val):
    happy = [i for i, y in enumerate(fer_val.labels) if EMOTIONS[y] == "happy"][:20]
    crop_labels = predictor.predict_faces(fer_val.images[happy]).argmax(1)
    agree = 0
    for i, lab in zip(happy, crop_labels, strict=True):
        frame, _ = scene([fer_val.images[i]], side=200, seed=i)
        preds = predictor.predict_frame(frame)
        if preds:
            p = preds[0]
            assert p.label in EMOTIONS and abs(sum(p.probs.values()) - 1) < 1e-3
            assert p.confidence == max(p.probs.values())
            agree += p.label == EMOTIONS[lab]
    assert agree >= 10  # detected faces mostly get the same label as the dataset crop


def test_found_faces_skip_detection_in_a_mixed_batch(predictor, fer_val, monkeypatch):
    crops = fer_val.images[:3]
    frame, _ = scene([fer_val.images[5]], side=200, seed=5)
    searched = []
    real_detect = predictor_module.detect_faces
    monkeypatch.setattr(
        predictor_module,
        "detect_faces",
        lambda img, cfg: searched.append(img) or real_detect(img, cfg),
    )
    out = predictor.predict_frames(
        [FoundFace(crops[0]), frame, FoundFace(crops[1]), FoundFace(crops[2])]
    )
    assert len(searched) == 1  # only the picture was searched for a face
    direct = predictor.predict_faces(crops)
    for k, i in ((0, 0), (2, 1), (3, 2)):
        (face,) = out[k]
        got = np.array([face.probs[e] for e in EMOTIONS])
        np.testing.assert_allclose(got, direct[i], atol=1e-4)
        assert face.box == (0, 0, 48, 48) and face.crop is not None and face.cues == {}
    assert len(out[1]) >= 1


def test_empty_batch_and_frame(predictor):
    assert predictor.predict_faces([]).shape == (0, 7)
    assert predictor.predict_frame(np.zeros((240, 320, 3), np.uint8)) == []


@pytest.mark.parametrize("shape", [(1, 1000, 3), (1000, 1, 3), (5, 5000, 3), (3000, 2)])
def test_thin_frames_have_no_faces(predictor, shape):
    assert predictor.predict_frame(np.full(shape, 128, np.uint8)) == []


def test_thread_safe(predictor, fer_val):
    crops = fer_val.images[:32]
    expected = predictor.predict_faces(crops)
    results, errors = [], []

    def work():
        try:
            for _ in range(3):
                results.append(predictor.predict_faces(crops))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        np.testing.assert_allclose(r, expected, atol=1e-5)


def test_flip_tta_is_mirror_invariant(fer_val):
    p = Predictor(tta=True)
    crops = fer_val.images[:8]
    np.testing.assert_allclose(
        p.predict_faces(crops), p.predict_faces(crops[:, :, ::-1].copy()), atol=1e-5
    )


def test_describe(predictor):
    d = predictor.describe()
    assert len(d["version"]) == 12 and d["device"] == "cpu"


def test_temporal_smoother():
    s = TemporalSmoother(half_life=1.0, reset_after=5.0)
    a, b = np.eye(7)[3], np.eye(7)[4]
    np.testing.assert_allclose(s.update(a, t=0.0), a)
    # one half-life later the new frame has weight 1/2
    np.testing.assert_allclose(s.update(b, t=1.0), 0.5 * a + 0.5 * b)
    # a long gap resets
    np.testing.assert_allclose(s.update(a, t=10.0), a)
