"""The one builder of observations from reading rows: server rows as before, device rows with
their head pose, gaze and eyes."""

from datetime import UTC, datetime, timedelta

import pytest

from emotion.observations import OBSERVATION_FIELDS, observations

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
NEUTRAL = {"neutral": 1.0}


def device_cues(**kw) -> dict:
    """Cues as a device frame sends them (docs: issue 22's wire format)."""
    cues = {
        "face": True,
        "box": [0.3, 0.2, 0.4, 0.5],
        "yaw": 12.0,
        "pitch": -30.0,
        "roll": 2.0,
        "eye_open_left": 0.1,
        "eye_open_right": 0.14,
        "gaze_yaw": -4.0,
        "gaze_pitch": None,
        "center_offset": 0.05,
        "area_fraction": 0.2,
    }
    return {**cues, **kw}


def row(seconds, *, face=True, source="server", cues=None, probs=None) -> dict:
    return {
        "captured_at": T0 + timedelta(seconds=seconds),
        "face_found": face,
        "face_source": source,
        "cues": cues if cues is not None else {},
        "probs": probs,
    }


def build(rows, emotion=True):
    return observations(rows, time_field="captured_at", origin=T0, emotion=emotion)


def test_the_rows_need_the_face_source():
    assert "face_source" in OBSERVATION_FIELDS


def test_a_device_row_carries_head_pose_gaze_and_eyes():
    (o,) = build([row(2.5, source="device", cues=device_cues(), probs=NEUTRAL)])
    assert (o.t, o.face, o.source) == (2.5, True, "device")
    assert (o.yaw, o.pitch, o.gaze_yaw, o.gaze_pitch) == (12.0, -30.0, -4.0, None)
    assert o.eye_open == pytest.approx(0.12)  # the mean of both eyes
    assert (o.center_offset, o.area_fraction) == (0.05, 0.2)
    assert o.probs["neutral"] == 1.0


def test_a_device_row_without_a_face_carries_nothing():
    (o,) = build([row(1, face=False, source="device", cues={"face": False})])
    assert (o.face, o.source, o.yaw, o.eye_open, o.center_offset) == (
        False,
        "device",
        None,
        None,
        None,
    )


def test_a_server_row_is_built_as_before():
    cues = {"center_offset": 0.1, "area_fraction": 0.05}
    (o,) = build([row(0, cues=cues, probs=NEUTRAL)], emotion=False)
    assert (o.source, o.center_offset, o.area_fraction, o.probs) == ("server", 0.1, 0.05, None)
    assert (o.yaw, o.pitch, o.eye_open) == (None, None, None)
    # a row read without face_source (an older caller) is a server row
    legacy = {k: v for k, v in row(0, cues=cues).items() if k != "face_source"}
    assert build([legacy])[0].source == "server"
