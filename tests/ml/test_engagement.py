"""ml.engagement on synthetic sequences; expectations are worked out by hand in the comments."""

import math
import random
from dataclasses import replace

import pytest

from ml.classes import EMOTIONS
from ml.engagement import (
    DISENGAGED,
    EMOTION_KEYS,
    ENGAGED,
    HIGHLY_ENGAGED,
    Observation,
    absent_for,
    attentive,
    band,
    concentration_index,
    disengaged_for,
    emotion_weight,
    expected_valence,
    frame_score,
    gaze_weight,
    summarize_window,
    validate_probs,
    windows,
)

NEUTRAL = {"neutral": 1.0}
HAPPY = {"happy": 1.0}


def face(t, offset=0.0, area=0.05, probs=None):
    return Observation(t=t, face=True, center_offset=offset, area_fraction=area, probs=probs)


def absent(t):
    return Observation(t=t, face=False)


# --- per-frame attention and weights -------------------------------------------------------


def test_fully_attentive_neutral_learner_scores_one():
    # 10 centred neutral frames: gaze 1, emotion weight 0.9 → 1 × 0.9 / 0.9 = 1 per frame
    obs = [face(t, probs=NEUTRAL) for t in range(10)]
    s = summarize_window(obs, 0, 10)
    assert s.n_frames == 10
    assert s.presence_ratio == 1.0
    assert s.attention_ratio == 1.0
    assert s.engagement == pytest.approx(1.0)
    assert s.band == HIGHLY_ENGAGED
    assert s.dominant_emotion == "neutral"
    assert s.valence == pytest.approx(0.0)
    assert s.emotion_distribution == pytest.approx({c: float(c == "neutral") for c in EMOTIONS})


def test_absent_half_the_window():
    # faces at even t (centred, no probs → score 1), absent at odd t (score 0)
    obs = [face(t) if t % 2 == 0 else absent(t) for t in range(10)]
    s = summarize_window(obs, 0, 10)
    assert s.presence_ratio == 0.5  # 5 / 10
    assert s.attention_ratio == 0.5
    assert s.engagement == pytest.approx(0.5)  # (5 × 1 + 5 × 0) / 10
    assert s.band == ENGAGED


def test_off_centre_face_beyond_threshold_is_not_attentive():
    assert attentive(face(0, offset=0.35))  # on the threshold: still attentive
    assert not attentive(face(0, offset=0.4))  # 0.4 > 0.35
    assert attentive(face(0, offset=0.4), max_center_offset=0.5)
    # gaze = max(0, 1 - off / 0.7)
    assert gaze_weight(face(0, offset=0.0)) == 1.0
    assert gaze_weight(face(0, offset=0.175)) == pytest.approx(0.75)  # 1 - 0.175/0.7
    assert gaze_weight(face(0, offset=0.35)) == pytest.approx(0.5)  # 1 - 0.35/0.7
    assert gaze_weight(face(0, offset=0.4)) == pytest.approx(3 / 7)  # 1 - 0.4/0.7 = 0.3/0.7
    assert gaze_weight(face(0, offset=0.7)) == pytest.approx(0.0)
    assert gaze_weight(face(0, offset=0.8)) == 0.0  # clipped, not negative
    # a window of such frames: attention 0, engagement 3/7 (engaged)
    s = summarize_window([face(t, offset=0.4) for t in range(4)], 0, 4)
    assert s.attention_ratio == 0.0
    assert s.engagement == pytest.approx(3 / 7)


def test_tiny_face_is_far_from_screen():
    tiny = face(0, area=0.005)  # 0.005 < 0.01
    assert not attentive(tiny)
    assert gaze_weight(tiny) == 0.0
    assert attentive(tiny, min_area_fraction=0.001)


def test_missing_cues_rely_on_face_presence():
    obs = Observation(t=0, face=True)
    assert attentive(obs)
    assert gaze_weight(obs) == 1.0
    assert not attentive(absent(0))
    assert gaze_weight(absent(0)) == 0.0


def test_happy_learner_expected_weight():
    assert emotion_weight(HAPPY) == pytest.approx(0.6)
    assert frame_score(face(0, probs=HAPPY)) == pytest.approx(0.6 / 0.9)  # 0.667 → highly
    s = summarize_window([face(t, probs=HAPPY) for t in range(5)], 0, 5)
    assert s.engagement == pytest.approx(2 / 3)
    assert s.band == HIGHLY_ENGAGED
    assert s.valence == pytest.approx(0.9)  # VALENCE["happy"]


def test_expected_rather_than_argmax_weight():
    p = {"happy": 0.5, "angry": 0.5}
    # 0.5 × 0.6 + 0.5 × 0.25 = 0.3 + 0.125 = 0.425
    assert emotion_weight(p) == pytest.approx(0.425)
    # 0.5 × 0.9 + 0.5 × (-0.8) = 0.05
    assert expected_valence(p) == pytest.approx(0.05)
    obs = face(0, offset=0.175, probs=p)  # gaze 0.75
    assert concentration_index(obs) == pytest.approx(0.31875)  # 0.75 × 0.425
    assert frame_score(obs) == pytest.approx(0.31875 / 0.9)  # ≈ 0.354
    assert concentration_index(face(0)) is None  # no probs


def test_window_emotion_summary_over_faces_with_probs():
    obs = [
        face(0, probs=NEUTRAL),  # score 1
        face(1, probs={"happy": 0.6, "neutral": 0.4}),  # (0.36 + 0.36) / 0.9 = 0.8
        absent(2),  # score 0, excluded from the emotion means
    ]
    s = summarize_window(obs, 0, 3)
    assert s.engagement == pytest.approx(0.6)  # (1 + 0.8 + 0) / 3
    assert s.band == ENGAGED
    assert s.emotion_distribution["neutral"] == pytest.approx(0.7)  # (1 + 0.4) / 2
    assert s.emotion_distribution["happy"] == pytest.approx(0.3)  # (0 + 0.6) / 2
    assert sum(s.emotion_distribution.values()) == pytest.approx(1.0)
    assert s.dominant_emotion == "neutral"
    assert s.valence == pytest.approx(0.27)  # 0.3 × 0.9 + 0.7 × 0


def test_engagement_only_mode():
    obs = [
        face(0, offset=0.0),  # gaze 1
        face(1, offset=0.175),  # gaze 0.75
        absent(2),  # gaze 0
        Observation(t=3, face=True),  # no cues: gaze 1
    ]
    s = summarize_window(obs, 0, 4)
    assert s.engagement == pytest.approx(0.6875)  # (1 + 0.75 + 0 + 1) / 4 = 2.75 / 4
    assert s.band == HIGHLY_ENGAGED
    assert s.presence_ratio == 0.75
    assert s.attention_ratio == 0.75
    assert s.emotion_distribution is None and s.dominant_emotion is None and s.valence is None

    full = s.to_dict()
    assert all(full[k] is None for k in EMOTION_KEYS)
    slim = s.to_dict(include_emotion=False)
    assert not set(EMOTION_KEYS) & set(slim)
    assert slim == {k: v for k, v in full.items() if k not in EMOTION_KEYS}
    assert slim["engagement"] == pytest.approx(0.6875)


def test_to_dict_with_emotions():
    d = summarize_window([face(0, probs=NEUTRAL)], 0, 1).to_dict()
    assert d["dominant_emotion"] == "neutral"
    assert set(d) == {
        "start",
        "end",
        "n_frames",
        "presence_ratio",
        "attention_ratio",
        "engagement",
        "band",
        *EMOTION_KEYS,
    }


# --- windows ---------------------------------------------------------------------------------


def test_windows_gaps_and_unsorted_input():
    obs = [face(23), face(1), absent(25), face(2)]
    random.Random(0).shuffle(obs)
    ws = windows(obs, window_s=10)
    # start = floor(1 / 10) × 10 = 0; last t = 25 → windows [0,10) [10,20) [20,30)
    assert [(w.start, w.end) for w in ws] == [(0, 10), (10, 20), (20, 30)]
    assert [w.n_frames for w in ws] == [2, 0, 2]
    gap = ws[1]
    # no frame: no data (camera paused, a gap), which is neither 0 nor "disengaged"
    assert (gap.presence_ratio, gap.attention_ratio, gap.engagement, gap.band) == (None,) * 4
    assert gap.emotion_distribution is None and gap.dominant_emotion is None
    assert ws[0].engagement == pytest.approx(1.0)
    assert ws[2].presence_ratio == 0.5  # t=23 face, t=25 absent


def test_windows_start_end_and_boundaries():
    obs = [face(10), face(12)]
    # t = 10 belongs to [10, 20), not [0, 10)
    assert [w.n_frames for w in windows(obs, window_s=10, start=0)] == [0, 2]
    # explicit range: empty windows before and after; off-grid end shortens the last one
    ws = windows(obs, window_s=10, start=-10, end=35)
    assert [(w.start, w.end) for w in ws] == [(-10, 0), (0, 10), (10, 20), (20, 30), (30, 35)]
    assert [w.n_frames for w in ws] == [0, 0, 2, 0, 0]
    # observations outside [start, end) are ignored
    assert [w.n_frames for w in windows(obs, window_s=5, start=11, end=16)] == [1]
    # negative times: floor(-3 / 10) × 10 = -10
    assert windows([face(-3)], window_s=10)[0].start == -10
    assert windows([], window_s=10) == []
    assert len(windows([], window_s=10, start=0, end=20)) == 2


def test_window_s_must_be_positive():
    for bad in (0, -1.0, math.nan):
        with pytest.raises(ValueError, match="window_s"):
            windows([face(0)], window_s=bad)
    with pytest.raises(ValueError, match="end must be after start"):
        summarize_window([face(0)], 5, 5)


# --- bands and validation --------------------------------------------------------------------


def test_band_boundaries():
    assert band(0.0) == DISENGAGED
    assert band(0.2499) == DISENGAGED
    assert band(0.25) == ENGAGED
    assert band(0.6499) == ENGAGED
    assert band(0.65) == HIGHLY_ENGAGED
    assert band(1.0) == HIGHLY_ENGAGED
    with pytest.raises(ValueError):
        band(math.nan)


def test_invalid_probs_raise():
    with pytest.raises(ValueError, match="sum to 1"):
        face(0, probs={"happy": 0.5})
    with pytest.raises(ValueError, match="unknown emotion"):
        face(0, probs={"bored": 1.0})
    with pytest.raises(ValueError, match="non-negative"):
        validate_probs({"happy": 1.2, "sad": -0.2})
    with pytest.raises(ValueError, match="sum to 1"):
        emotion_weight({"neutral": 0.5, "sad": 0.2})
    with pytest.raises(ValueError, match="without a face"):
        Observation(t=0, face=False, probs=NEUTRAL)
    # softmax outputs rounded to 4 decimals may miss 1 slightly: accepted, missing classes = 0
    p = validate_probs({"neutral": 0.3333, "happy": 0.3333, "sad": 0.3333})
    assert p["angry"] == 0.0 and set(p) == set(EMOTIONS)


def test_from_dict():
    obs = Observation.from_dict(
        {
            "t": 1.5,
            "face": True,
            "cues": {"frontal": True, "area_fraction": 0.04, "center_offset": 0.1},
            "probs": NEUTRAL,
        }
    )
    assert (obs.t, obs.face, obs.center_offset, obs.area_fraction) == (1.5, True, 0.1, 0.04)
    assert obs.probs["neutral"] == 1.0
    none = Observation.from_dict({"t": 2, "face": False, "cues": None, "probs": None})
    assert none == Observation(t=2.0, face=False)


# --- alert helpers ---------------------------------------------------------------------------


def test_absent_for():
    obs = [face(0), face(5), absent(8), absent(9), face(12)]
    assert absent_for(obs, now=10) == 5  # last face at or before 10 is t=5
    assert absent_for(obs, now=12) == 0
    assert absent_for([absent(1)], now=10) == math.inf
    assert absent_for([], now=10) == math.inf


def test_disengaged_for():
    # [0,10) present → highly engaged; [10,20) and [20,30) absent → disengaged
    obs = [face(t) for t in range(10)] + [absent(t) for t in range(10, 30)]
    ws = windows(obs, window_s=10)
    assert [w.band for w in ws] == [HIGHLY_ENGAGED, DISENGAGED, DISENGAGED]
    assert disengaged_for(ws, now=28) == 18  # run starts at 10
    assert disengaged_for(ws, now=35) == 20  # capped at the last window's end (30)
    assert disengaged_for(ws[:1], now=10) == 0  # latest window is engaged
    assert disengaged_for([], now=10) == 0
    # a gap between windows breaks the run: only [20, 30) counts
    early = replace(ws[1], start=0.0, end=10.0)  # disengaged, but [10, 20) is missing
    assert disengaged_for([early, ws[2]], now=30) == 10
    # so does a window without frames (no data): [40, 50) alone counts
    ws2 = windows(obs + [absent(t) for t in range(40, 50)], window_s=10)
    assert [w.band for w in ws2] == [HIGHLY_ENGAGED, DISENGAGED, DISENGAGED, None, DISENGAGED]
    assert disengaged_for(ws2, now=50) == 10
