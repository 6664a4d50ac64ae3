"""The live view's maths and payloads on plain values: no database, cache or channel layer."""

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from emotion.summary import (
    NO_FRAMES,
    Alert,
    CurrentWindow,
    SessionFacts,
    SessionSummary,
    Thresholds,
    aged,
    carried_run_start,
    course_summary,
    disengaged_since,
    look_back_windows,
    presence,
    recent_windows,
    summarise,
)
from ml.engagement import Observation

NOW = datetime(2026, 12, 6, 10, 0, 0, 250000, tzinfo=UTC)
WINDOW = 10.0
AWAY = 0.8  # centre offset of a face looking away: gaze weight 0, engagement 0
MIX = {
    "angry": 0.05,
    "disgust": 0.01,
    "fear": 0.04,
    "happy": 0.5,
    "sad": 0.1,
    "surprise": 0.1,
    "neutral": 0.2,
}


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def looking(first_s: float, last_s: float, offset: float, probs=None) -> list[Observation]:
    """A face every second from ``first_s`` to ``last_s`` seconds before now."""
    return [
        Observation(t=-float(s), face=True, center_offset=offset, probs=probs)
        for s in range(int(last_s), int(first_s) + 1)
    ]


def facts(**kw) -> SessionFacts:
    base = {
        "session": 7,
        "learner": 3,
        "learner_name": "ana",
        "course": 2,
        "status": "active",
        "started_at": ago(900),
        "emotion_enabled": True,
        "last_frame_at": ago(0.4),
        "last_analysed_at": ago(0.4),
        "last_face_at": ago(0.4),
    }
    return SessionFacts(**{**base, **kw})


def a_summary(**kw) -> SessionSummary:
    """A learner looking at the screen, happy, the newest frame analysed 0.4 s ago."""
    recent = recent_windows(looking(9, 1, 0.0, MIX), WINDOW, 7)
    out = summarise(
        facts(),
        CurrentWindow.of(recent[-1], emotion=True),
        now=NOW,
        window_s=WINDOW,
        thresholds=Thresholds(absent_s=30, disengaged_s=60),
        disengaged_since=None,
    )
    return replace(out, **kw)


# --- presence and absence -----------------------------------------------------------


def seen(last_face_ago, *, last_frame_ago=None, last_analysed_ago=None, active=True):
    return presence(
        active=active,
        now=NOW,
        last_face=ago(last_face_ago) if last_face_ago is not None else None,
        last_frame=ago(last_frame_ago) if last_frame_ago is not None else None,
        last_analysed=ago(last_analysed_ago) if last_analysed_ago is not None else None,
        started_at=ago(900),
        threshold=30,
    )


def test_a_face_at_the_threshold_is_present_and_past_it_absent():
    assert seen(30, last_frame_ago=0, last_analysed_ago=0) == (True, None)
    assert seen(30.05, last_frame_ago=0, last_analysed_ago=0) == (False, Alert("absent", 30.1))


def test_no_face_since_the_start_is_absent_from_the_start():
    assert seen(None, last_frame_ago=0, last_analysed_ago=0) == (False, Alert("absent", 900.0))


def test_an_ended_session_is_neither_present_nor_alerted():
    assert seen(100, active=False) == (False, None)
    assert seen(1, active=False) == (False, None)


def test_frames_not_analysed_yet_are_no_data_while_the_camera_sends():
    """Last face 60 s ago, then frames sent but none analysed: absence is measured only to
    the newest analysed frame (the last face), so no alert."""
    assert seen(60, last_frame_ago=1, last_analysed_ago=60) == (True, None)


def test_a_camera_that_stopped_sending_is_absent_from_the_last_face():
    assert seen(60, last_frame_ago=60, last_analysed_ago=60) == (False, Alert("absent", 60.0))


# --- the disengaged run -------------------------------------------------------------


def test_the_look_back_covers_the_longer_threshold_and_a_window_more():
    assert look_back_windows(10.0, Thresholds(absent_s=30, disengaged_s=60)) == 7
    assert look_back_windows(10.0, Thresholds(absent_s=30, disengaged_s=61)) == 8
    assert look_back_windows(10.0, Thresholds(absent_s=0, disengaged_s=0)) == 1


def test_a_frame_at_exactly_now_counts_in_the_current_window():
    (current,) = recent_windows([Observation(t=0.0, face=True)], WINDOW, 1)
    assert current.n_frames == 1


def test_no_run_and_a_short_run_need_no_previous_summary():
    engaged = recent_windows(looking(69, 0, 0.0), WINDOW, 7)
    assert disengaged_since(engaged, NOW, 70.0, None) == (None, True)
    short = recent_windows(looking(69, 13, 0.0) + looking(12, 0, AWAY), WINDOW, 7)
    assert disengaged_since(short, NOW, 70.0, None) == (ago(10), True)


def test_a_run_that_fills_the_look_back_is_carried_from_the_previous_summary():
    away = recent_windows(looking(69, 0, AWAY), WINDOW, 7)
    made_during_run = a_summary(at=ago(20), disengaged_since=ago(600))
    assert disengaged_since(away, NOW, 70.0, made_during_run) == (ago(600), True)


def test_a_previous_summary_made_during_the_run_that_saw_none_starts_it_in_the_look_back():
    away = recent_windows(looking(69, 0, AWAY), WINDOW, 7)
    saw_none = a_summary(at=ago(20), disengaged_since=None)
    assert disengaged_since(away, NOW, 70.0, saw_none) == (ago(70), True)


@pytest.mark.parametrize("previous_at", [None, 100, -5])
def test_without_a_summary_made_during_the_run_the_start_is_not_settled(previous_at):
    away = recent_windows(looking(69, 0, AWAY), WINDOW, 7)
    previous = None if previous_at is None else a_summary(at=ago(previous_at))
    assert disengaged_since(away, NOW, 70.0, previous) == (ago(70), False)
    if previous is not None:
        assert carried_run_start(previous, ago(70), NOW) == (False, None)


def test_the_disengaged_alert_runs_from_the_runs_start_at_the_threshold():
    away = recent_windows(looking(69, 0, AWAY), WINDOW, 7)

    def alerts(since):
        return summarise(
            facts(),
            CurrentWindow.of(away[-1], emotion=False),
            now=NOW,
            window_s=WINDOW,
            thresholds=Thresholds(absent_s=30, disengaged_s=60),
            disengaged_since=since,
        ).alerts

    assert alerts(ago(59.9)) == ()
    assert alerts(ago(60)) == (Alert("disengaged", 60.0),)
    assert alerts(ago(600)) == (Alert("disengaged", 600.0),)


# --- aging a cached summary ---------------------------------------------------------


def test_a_summary_within_the_window_keeps_its_window_and_ages_its_seconds():
    s = a_summary(seconds_since_frame=0.4, absent_for=0.4)
    later = aged(s, NOW + timedelta(seconds=3), absent_threshold_s=30)
    assert later.window == s.window and later.window.n_frames == 9
    assert later.at == NOW + timedelta(seconds=3)
    assert (later.seconds_since_frame, later.absent_for) == (3.4, 3.4)
    assert later.present and later.alerts == ()


def test_once_the_newest_analysed_frame_left_the_window_there_are_no_frames():
    """A camera that stopped, disengaged and alerted: 40 s later the window is empty, the
    disengaged alert gone, the learner absent from the last face."""
    s = a_summary(disengaged_since=ago(70), alerts=(Alert("disengaged", 70.0),))
    later = aged(s, NOW + timedelta(seconds=40), absent_threshold_s=30)
    assert later.window == NO_FRAMES and later.disengaged_since is None
    assert later.present is False
    assert later.alerts == (Alert("absent", 40.4),)
    assert later.to_dict()["emotion_distribution"] is None


def test_a_disengaged_alert_ages_while_the_window_still_holds_frames():
    s = a_summary(disengaged_since=ago(70), alerts=(Alert("disengaged", 70.0),))
    later = aged(s, NOW + timedelta(seconds=5), absent_threshold_s=30)
    assert later.alerts == (Alert("disengaged", 75.0),)


def test_aging_a_summary_into_the_past_does_not_age_its_seconds():
    s = a_summary()
    assert aged(s, NOW - timedelta(seconds=2), absent_threshold_s=30).absent_for == 0.4


# --- payloads -----------------------------------------------------------------------


def realistic_payload() -> dict:
    """A cached summary as the live view writes it (emotion on, disengaged and alerted)."""
    return {
        "session": 7,
        "learner": 3,
        "learner_name": "Ana Lima",
        "course": 2,
        "status": "active",
        "at": "2026-12-06T10:00:00.250000+00:00",
        "started_at": "2026-12-06T09:45:00.123456+00:00",
        "present": True,
        "last_frame_at": "2026-12-06T09:59:59.850000+00:00",
        "last_analysed_at": "2026-12-06T09:59:59.850000+00:00",
        "seconds_since_frame": 0.4,
        "absent_for": 0.4,
        "disengaged_since": "2026-12-06T09:58:50.250001+00:00",
        "window_s": 10.0,
        "n_frames": 9,
        "presence_ratio": 1.0,
        "attention_ratio": 0.2222222222222222,
        "engagement": 0.10833333333333334,
        "band": "disengaged",
        "alerts": [{"kind": "disengaged", "seconds": 70.0}],
        "emotion_enabled": True,
        "dominant_emotion": "happy",
        "emotion_distribution": dict(MIX),
        "uncertain_ratio": 0.25,
    }


def test_a_payload_read_back_is_written_out_the_same():
    d = realistic_payload()
    again = SessionSummary.from_dict(d).to_dict()
    assert again == d
    assert json.dumps(again) == json.dumps(d)  # same keys in the same order


def test_a_payload_without_emotion_has_no_emotion_keys_both_ways():
    d = realistic_payload()
    del d["dominant_emotion"], d["emotion_distribution"], d["uncertain_ratio"]
    d.update(emotion_enabled=False, last_frame_at=None, absent_for=None, disengaged_since=None)
    assert SessionSummary.from_dict(d).to_dict() == d


def test_a_computed_summary_survives_the_cache():
    s = a_summary(disengaged_since=ago(70.000001))
    d = json.loads(json.dumps(s.to_dict()))
    assert SessionSummary.from_cache(d) == s
    assert d["at"] == "2026-12-06T10:00:00.250000+00:00"
    assert d["dominant_emotion"] == "happy"


def test_a_cache_miss_or_a_summary_cached_before_at_existed_is_none():
    assert SessionSummary.from_cache(None) is None
    d = realistic_payload()
    del d["at"]
    assert SessionSummary.from_cache(d) is None


# --- the course aggregate -----------------------------------------------------------


def test_the_course_aggregate_is_a_mean_of_active_learners_with_frames():
    a = a_summary()
    b = replace(
        a,
        session=8,
        learner=4,
        learner_name="ben",
        present=False,
        window=NO_FRAMES,
        alerts=(Alert("absent", 40.0),),
    )
    ended = replace(a, session=9, status="ended", window=replace(a.window, engagement=0.0))
    agg = course_summary(course=2, emotion_enabled=True, sessions=[a, b, ended], now=NOW)
    d = agg.to_dict()
    assert d["active_sessions"] == 2 and d["present"] == 1
    assert d["engagement"] == round(a.window.engagement, 4)
    assert d["band"] == a.window.band
    assert d["alerts"] == [
        {"kind": "absent", "seconds": 40.0, "learner": 4, "learner_name": "ben", "session": 8}
    ]
    mix = a.window.emotion_distribution
    assert d["emotion_distribution"] == {k: round(v, 4) for k, v in mix.items()}
    off = course_summary(course=2, emotion_enabled=False, sessions=[b], now=NOW).to_dict()
    assert off["engagement"] is None and off["band"] is None
    assert "emotion_distribution" not in off


def test_paused_reads_after_five_capture_intervals_and_never_under_five_seconds():
    from emotion.summary import paused_after

    assert paused_after(2.0) == 5.0
    assert paused_after(0.5) == 10.0


def test_class_history_is_the_mean_of_learner_means_per_window_leaving_empty_ones_out():
    from emotion.summary import class_history

    centred = looking(first_s=25, last_s=11, offset=0.0)  # windows 3 and 2 back: engaged 1.0
    away = looking(first_s=15, last_s=11, offset=AWAY)  # window 2 back only: engagement 0
    points = class_history({1: centred, 2: away}, now=NOW, window_s=WINDOW, n=4)
    assert [(p.at, p.engagement) for p in points] == [(ago(20), 1.0), (ago(10), 0.5)]
    assert json.loads(json.dumps(points[0].to_dict())) == {
        "at": ago(20).isoformat(),
        "engagement": 1.0,
    }
    assert class_history({}, now=NOW, window_s=WINDOW, n=4) == ()


# --- the device path's cues -----------------------------------------------------------------


def device(t: float, yaw: float, eye: float = 0.3) -> Observation:
    return Observation(t=t, face=True, yaw=yaw, pitch=0.0, eye_open=eye, source="device")


def test_a_device_window_carries_its_cues_into_the_payload_and_back():
    obs = [device(-3, 0.0), device(-2, 40.0), device(-1, 0.0, eye=0.05), device(-0.5, 0.0)]
    recent = recent_windows(obs, WINDOW, 1)
    current = CurrentWindow.of(recent[-1], emotion=False)
    assert current.from_device and current.device_ratio == 1.0
    assert current.looking_away_ratio == 0.25 and current.eyes_closed_ratio == 0.25
    d = a_summary(window=current).to_dict()
    assert (d["looking_away_ratio"], d["eyes_closed_ratio"], d["device_ratio"]) == (0.25, 0.25, 1.0)
    assert d["head_motion"] == pytest.approx(current.head_motion)
    again = json.loads(json.dumps(d))
    assert SessionSummary.from_dict(again).to_dict() == d
    # a course's wider cone: nobody looks away
    wide = recent_windows(obs, WINDOW, 1, attention_cone_degrees=45)[-1]
    assert wide.looking_away_ratio == 0.0


def test_a_server_window_has_no_device_keys_in_its_payload():
    recent = recent_windows(looking(-5, -1, 0.0), WINDOW, 1)
    current = CurrentWindow.of(recent[-1], emotion=False)
    assert not current.from_device and current.device_ratio is None
    d = a_summary(window=current).to_dict()
    assert not {"device_ratio", "looking_away_ratio", "eyes_closed_ratio", "head_motion"} & set(d)


def test_an_aged_device_summary_loses_its_cues_with_its_frames():
    current = CurrentWindow.of(recent_windows([device(-1, 40.0)], WINDOW, 1)[-1], emotion=False)
    s = a_summary(window=current, last_analysed_at=ago(1))
    later = aged(s, NOW + timedelta(seconds=30), absent_threshold_s=30)
    assert later.window == NO_FRAMES and "looking_away_ratio" not in later.to_dict()
