"""ml.engagement's device path (head pose, gaze, eye closure): expectations worked out by hand."""

import math

import pytest

from ml.engagement import (
    DEVICE_KEYS,
    DISENGAGED,
    EYES_CLOSED_WEIGHT,
    HIGHLY_ENGAGED,
    Observation,
    absent_for,
    attentive,
    facing,
    frame_score,
    gaze_weight,
    summarize_window,
    windows,
)

NEUTRAL = {"neutral": 1.0}


def dev(t, yaw=0.0, pitch=0.0, eye=0.3, gaze_yaw=None, gaze_pitch=None, probs=None):
    return Observation(
        t=t,
        face=True,
        yaw=yaw,
        pitch=pitch,
        gaze_yaw=gaze_yaw,
        gaze_pitch=gaze_pitch,
        eye_open=eye,
        probs=probs,
        source="device",
    )


def server(t, offset=0.0, area=0.05, probs=None):
    return Observation(t=t, face=True, center_offset=offset, area_fraction=area, probs=probs)


# --- per frame -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaw", "pitch", "gaze_yaw", "gaze_pitch", "faces"),
    [
        (25.0, 0.0, None, None, True),  # on the cone's edge: inside
        (25.01, 0.0, None, None, False),  # just past it
        (0.0, -25.0, None, None, True),
        (0.0, -26.0, None, None, False),
        (20.0, 0.0, 10.0, None, False),  # head 20 + eyes 10 = 30 > 25
        (30.0, 0.0, -10.0, None, True),  # head turned, eyes back on the screen: 20
        (0.0, -40.0, None, 20.0, True),  # head down 40, eyes up 20: -20
    ],
)
def test_facing_at_the_cone_edge(yaw, pitch, gaze_yaw, gaze_pitch, faces):
    obs = dev(0, yaw=yaw, pitch=pitch, gaze_yaw=gaze_yaw, gaze_pitch=gaze_pitch)
    assert facing(obs) is faces
    assert attentive(obs) is faces
    assert (gaze_weight(obs) == 1.0) is faces  # full weight exactly inside the cone


def test_the_cone_is_a_parameter():
    obs = dev(0, yaw=30.0)
    assert not facing(obs) and facing(obs, attention_cone_degrees=30)
    assert attentive(obs, attention_cone_degrees=35)
    with pytest.raises(ValueError, match="attention_cone_degrees"):
        facing(obs, attention_cone_degrees=0)


def test_gaze_weight_falls_smoothly_outside_the_cone():
    # 1 inside the cone, 1 − excess / 25 outside, 0 at twice the cone and beyond
    assert gaze_weight(dev(0, yaw=25.0)) == 1.0
    assert gaze_weight(dev(0, yaw=30.0)) == pytest.approx(1 - 5 / 25)
    assert gaze_weight(dev(0, yaw=-37.5)) == pytest.approx(0.5)
    assert gaze_weight(dev(0, pitch=-50.0)) == 0.0
    assert gaze_weight(dev(0, yaw=80.0)) == 0.0
    # the worse axis counts: yaw 30 (excess 5), pitch 35 (excess 10)
    assert gaze_weight(dev(0, yaw=30.0, pitch=35.0)) == pytest.approx(1 - 10 / 25)
    # with a 50° cone, yaw 60 is 10 out: 1 − 10 / 50
    assert gaze_weight(dev(0, yaw=60.0), attention_cone_degrees=50) == pytest.approx(0.8)


def test_closed_eyes_halve_the_weight_but_not_attention():
    closed = dev(0, eye=0.1)
    assert gaze_weight(closed) == EYES_CLOSED_WEIGHT == 0.5
    assert attentive(closed)  # facing: the eyes are a separate cue
    assert gaze_weight(dev(0, eye=0.15)) == 1.0  # 0.15 itself is open
    assert gaze_weight(dev(0, yaw=37.5, eye=0.05)) == pytest.approx(0.25)
    # neutral expression, closed eyes: 0.5 × 0.9 / 0.9
    assert frame_score(dev(0, eye=0.1, probs=NEUTRAL)) == pytest.approx(0.5)


def test_unknown_device_cues_are_not_held_against_the_frame():
    obs = Observation(t=0, face=True, source="device")
    assert facing(obs) and attentive(obs) and gaze_weight(obs) == 1.0


def test_device_cues_are_validated():
    with pytest.raises(ValueError, match="yaw"):
        dev(0, yaw=120.0)
    with pytest.raises(ValueError, match="eye_open"):
        dev(0, eye=1.5)
    with pytest.raises(ValueError, match="gaze_pitch"):
        dev(0, gaze_pitch=math.nan)
    with pytest.raises(ValueError, match="source"):
        Observation(t=0, face=True, source="phone")
    with pytest.raises(ValueError, match="only a device observation"):
        Observation(t=0, face=True, yaw=3.0)
    with pytest.raises(ValueError, match="without a face"):
        Observation(t=0, face=False, yaw=3.0, source="device")


def test_from_dict_reads_the_wire_cues():
    o = Observation.from_dict(
        {
            "t": 1,
            "face": True,
            "source": "device",
            "cues": {
                "yaw": 10,
                "pitch": -5,
                "roll": 3,
                "eye_open_left": 0.2,
                "eye_open_right": 0.3,
                "gaze_yaw": None,
                "center_offset": 0.1,
                "area_fraction": 0.2,
            },
        }
    )
    assert (o.source, o.yaw, o.pitch, o.gaze_yaw, o.center_offset) == ("device", 10, -5, None, 0.1)
    assert o.eye_open == pytest.approx(0.25)
    # a server row's cues stay the face position only
    s = Observation.from_dict({"t": 1, "face": True, "cues": {"yaw": 10, "center_offset": 0.1}})
    assert s.source == "server" and s.yaw is None


# --- windows -------------------------------------------------------------------------------


def test_eyes_closed_ratio_is_perclos_over_device_face_frames():
    frames = [dev(t, eye=0.1 if t < 3 else 0.3) for t in range(10)]
    frames.append(Observation(t=9.5, face=False, source="device"))
    s = summarize_window(frames, 0, 10)
    assert s.eyes_closed_ratio == pytest.approx(3 / 10)  # the faceless frame does not count
    assert s.looking_away_ratio == 0.0
    assert s.device_ratio == 1.0
    # 10 faces of 11 frames: 7 × 1 + 3 × 0.5 = 8.5 / 11
    assert s.engagement == pytest.approx(8.5 / 11)


def test_looking_away_and_head_motion():
    # yaw 0, 0, 40, 40: away half the time; var(yaw) = 400, var(pitch) = 0 → 20°
    frames = [dev(0), dev(1), dev(2, yaw=40.0), dev(3, yaw=40.0)]
    s = summarize_window(frames, 0, 10)
    assert s.looking_away_ratio == 0.5 and s.attention_ratio == 0.5
    assert s.head_motion == pytest.approx(20.0)
    # 2 × 1 + 2 × (1 − 15/25) = 2.8 / 4
    assert s.engagement == pytest.approx(0.7) and s.band == HIGHLY_ENGAGED
    # a wider cone takes them all in
    wide = summarize_window(frames, 0, 10, attention_cone_degrees=45)
    assert wide.looking_away_ratio == 0.0 and wide.engagement == 1.0
    assert summarize_window([dev(0, yaw=40.0)], 0, 10).head_motion is None  # one frame


def test_looking_down_for_a_few_seconds_keeps_presence():
    """A learner reading notes for 4 s: every frame has a face (the device finds tilted
    faces), so presence stays 1 and absent_for stays at the frame interval; only attention and
    the score dip."""
    frames = [dev(t, pitch=-45.0 if 3 <= t < 7 else -5.0) for t in range(10)]
    s = summarize_window(frames, 0, 10)
    assert s.presence_ratio == 1.0
    assert s.attention_ratio == pytest.approx(0.6) and s.looking_away_ratio == pytest.approx(0.4)
    assert absent_for(frames, now=6.5) == pytest.approx(0.5)
    # 6 × 1 + 4 × (1 − 20/25) = 6.8 / 10
    assert s.engagement == pytest.approx(0.68)


def test_server_observations_are_unchanged_and_have_no_device_cues():
    frames = [server(0), server(1, offset=0.5), Observation(t=2, face=False)]
    s = summarize_window(frames, 0, 10)
    assert s.device_ratio == 0.0
    assert (s.eyes_closed_ratio, s.looking_away_ratio, s.head_motion) == (None, None, None)
    # the cone plays no part in a server frame
    narrow = summarize_window(frames, 0, 10, attention_cone_degrees=5)
    assert (narrow.engagement, narrow.attention_ratio) == (s.engagement, s.attention_ratio)
    assert not set(DEVICE_KEYS) & set(s.to_dict())
    assert s.to_dict(include_device=True)["device_ratio"] == 0.0


def test_mixed_windows():
    """Half the frames from the device (one looking away), half server pictures (one off
    centre): each frame by its own formula, the device cues over the device frames only."""
    frames = [dev(0), dev(1, yaw=-50.0, eye=0.1), server(2), server(3, offset=0.35)]
    s = summarize_window(frames, 0, 10, attention_cone_degrees=25)
    assert s.device_ratio == 0.5 and s.presence_ratio == 1.0
    assert s.looking_away_ratio == 0.5 and s.eyes_closed_ratio == 0.5
    assert s.attention_ratio == 0.75  # the server frame at offset 0.35 = M is still attentive
    # device 1 + 0 (50 = twice the cone), server 1 + 0.5
    assert s.engagement == pytest.approx(2.5 / 4)
    d = s.to_dict(include_device=True)
    assert [d[k] for k in DEVICE_KEYS] == [0.5, 0.5, pytest.approx(25.0), 0.5]


def test_windows_pass_the_cone_and_keep_gaps_empty():
    frames = [dev(1, yaw=30.0), dev(25, yaw=30.0)]
    narrow, gap, _ = windows(frames, window_s=10)
    assert narrow.band == HIGHLY_ENGAGED and narrow.looking_away_ratio == 1.0
    assert all(getattr(gap, k) is None for k in DEVICE_KEYS)
    wide = windows(frames, window_s=10, attention_cone_degrees=30)[0]
    assert wide.looking_away_ratio == 0.0
    away = windows([dev(1, yaw=60.0)], window_s=10)[0]
    assert away.engagement == 0.0 and away.band == DISENGAGED and away.presence_ratio == 1.0
