"""Timelines and reports against hand-computed numbers.

Session A (emotion on): 20 readings 1 s apart. t=0..9 a centred face (offset 0, so gaze weight
1), neutral with p=1 → frame score 1 × 0.9 / 0.9 = 1. t=10..19 no face → 0.
  window [0,10): presence 1, attention 1, engagement 1.0 (highly engaged), neutral 1.0
  window [10,20): presence 0, engagement 0 (disengaged), no emotion data
  whole session: presence 0.5, engagement 0.5 (engaged)
Session B: 10 happy frames, centred → 0.6 / 0.9 = 0.6667 each (highly engaged).
"""

import csv
import datetime as dt
import io
import math

import pytest
from django.utils import timezone

from tests.factories import LearnerSessionFactory, ReadingFactory, probs_for


@pytest.fixture
def readings(world):
    for t in range(20):
        ReadingFactory(session=world.session_a, sequence=t, face_found=t < 10)
    for t in range(10):
        ReadingFactory(session=world.session_b, sequence=t, probs=probs_for("happy"))


def test_session_timeline(world, api, readings):
    r = api(world.instructor).get(f"/api/sessions/{world.session_a.pk}/timeline/?window=10")
    body = r.json()
    assert body["emotion_enabled"] is True and body["window_s"] == 10
    w0, w1 = body["windows"]
    assert (w0["start"], w0["end"], w0["n_frames"]) == (0.0, 10.0, 10)
    assert w0["presence_ratio"] == 1.0 and w0["attention_ratio"] == 1.0
    assert w0["engagement"] == pytest.approx(1.0) and w0["band"] == "highly engaged"
    assert w0["dominant_emotion"] == "neutral"
    assert w0["emotion_distribution"]["neutral"] == pytest.approx(1.0)
    assert w1["presence_ratio"] == 0.0 and w1["engagement"] == 0.0 and w1["band"] == "disengaged"
    assert w1["emotion_distribution"] is None
    five = api(world.instructor).get(f"/api/sessions/{world.session_a.pk}/timeline/?window=5")
    assert len(five.json()["windows"]) == 4
    bad = api(world.instructor).get(f"/api/sessions/{world.session_a.pk}/timeline/?window=1")
    assert bad.status_code == 400


def test_session_report(world, api, readings):
    rep = api(world.learner_a).get(f"/api/sessions/{world.session_a.pk}/report/").json()
    assert rep["n_frames"] == 20
    assert rep["presence_ratio"] == 0.5 and rep["attention_ratio"] == 0.5
    assert rep["engagement"] == pytest.approx(0.5) and rep["band"] == "engaged"
    assert rep["band_share"] == {"disengaged": 0.5, "highly engaged": 0.5}
    assert rep["dominant_emotion"] == "neutral"
    r = api(world.learner_a).get(f"/api/sessions/{world.session_a.pk}/report/?format=csv")
    assert r["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode())))
    assert len(rows) == 1 and float(rows[0]["engagement"]) == pytest.approx(0.5)
    assert float(rows[0]["emotion_distribution_neutral"]) == pytest.approx(0.5 * 2)  # faces only


def test_session_csv_columns_are_the_same_with_or_without_frames(world, api, readings):
    """Researchers join one CSV per session: an empty session had one emotion_distribution
    column and no band_share columns, a full one seven and one per band reached."""
    from ml.classes import EMOTIONS
    from tests.factories import LearnerSessionFactory

    empty = LearnerSessionFactory(
        learner=world.learner_a, course=world.course, consent=world.learner_a.consents.get()
    )

    def csv_of(session):
        r = api(world.learner_a).get(f"/api/sessions/{session.pk}/report/?format=csv")
        return list(csv.DictReader(io.StringIO(r.content.decode())))

    (full_row,), (empty_row,) = csv_of(world.session_a), csv_of(empty)
    assert list(full_row) == list(empty_row)
    assert {f"emotion_distribution_{e}" for e in EMOTIONS} <= set(full_row)
    assert full_row["band_share_disengaged"] == "0.5" and full_row["band_share_engaged"] == "0.0"
    assert empty_row["band_share_engaged"] == "" and empty_row["emotion_distribution_happy"] == ""
    assert empty_row["n_frames"] == "0"


def test_course_report_and_csv(world, api, readings):
    rep = api(world.instructor).get(f"/api/courses/{world.course.pk}/report/").json()
    a, b = rep["learners"]
    assert (a["learner"], a["sessions"], a["n_frames"]) == ("learner_a", 1, 20)
    assert a["engagement"] == pytest.approx(0.5)
    assert b["engagement"] == pytest.approx(0.6 / 0.9) and b["dominant_emotion"] == "happy"
    assert b["band"] == "highly engaged"
    # overall: (10 × 1 + 10 × 0 + 10 × 0.6667) / 30
    assert rep["overall"]["engagement"] == pytest.approx((10 + 10 * 0.6 / 0.9) / 30)
    assert rep["overall"]["presence_ratio"] == pytest.approx(20 / 30)
    r = api(world.instructor).get(f"/api/courses/{world.course.pk}/report/?format=csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode())))
    assert [row["learner"] for row in rows] == ["learner_a", "learner_b"]
    assert "emotion_distribution_happy" in rows[0]
    empty = (
        api(world.instructor)
        .get(f"/api/courses/{world.course.pk}/report/?from=2000-01-01&to=2000-01-02")
        .json()
    )
    assert empty["learners"] == [] and empty["overall"]["n_frames"] == 0
    # the CSV of an empty range still has its header, with the same columns as a full one
    empty_csv = api(world.instructor).get(
        f"/api/courses/{world.course.pk}/report/?format=csv&from=2000-01-01&to=2000-01-02"
    )
    header = empty_csv.content.decode().splitlines()
    assert len(header) == 1 and header[0].split(",") == list(rows[0])
    bad = api(world.instructor).get(f"/api/courses/{world.course.pk}/report/?from=someday")
    assert bad.status_code == 400 and "from" in bad.json()["error"]["message"]


def test_engagement_only_course_never_returns_emotion(world, api):
    world.course.emotion_inference_enabled = False
    world.course.save()
    for t in range(10):
        # even a reading that (wrongly) held probabilities is not shown
        ReadingFactory(session=world.session_a, sequence=t, probs=probs_for("happy"))
    c = api(world.instructor)
    tl = c.get(f"/api/sessions/{world.session_a.pk}/timeline/").json()
    rep = c.get(f"/api/sessions/{world.session_a.pk}/report/").json()
    course = c.get(f"/api/courses/{world.course.pk}/report/").json()
    csv_text = c.get(f"/api/courses/{world.course.pk}/report/?format=csv").content.decode()
    for blob in (tl, rep, course):
        text = str(blob)
        assert "emotion_distribution" not in text and "dominant_emotion" not in text
        assert "happy" not in text and "valence" not in text
    assert "happy" not in csv_text and "emotion" not in csv_text.split("\n")[0].replace(
        "emotion_enabled", ""
    )
    # engagement from attention alone: centred face in every frame → 1.0
    assert rep["engagement"] == pytest.approx(1.0) and tl["emotion_enabled"] is False


# --- date ranges: sessions across midnight ------------------------------------------------------

UTC = dt.UTC


@pytest.fixture
def overnight(world, settings):
    """learner_c in Chemistry: one session 23:30 on 1 Jan → 00:30 on 2 Jan 2026 with 4 attentive
    frames before midnight and 6 faceless frames after, and one session at noon on 1 Jan."""
    settings.TIME_ZONE = "UTC"
    learner = world.other_course.learners.get()
    consent = learner.consents.get()
    night = LearnerSessionFactory(
        learner=learner,
        course=world.other_course,
        consent=consent,
        started_at=dt.datetime(2026, 1, 1, 23, 30, tzinfo=UTC),
        ended_at=dt.datetime(2026, 1, 2, 0, 30, tzinfo=UTC),
        status="ended",
    )
    midnight = dt.datetime(2026, 1, 2, tzinfo=UTC)
    for i, minutes in enumerate([-20, -15, -10, -1, 0, 1, 5, 10, 20, 29]):
        ReadingFactory(
            session=night,
            sequence=i,
            captured_at=midnight + dt.timedelta(minutes=minutes),
            face_found=minutes < 0,
        )
    noon = LearnerSessionFactory(
        learner=learner,
        course=world.other_course,
        consent=consent,
        started_at=dt.datetime(2026, 1, 1, 12, tzinfo=UTC),
        ended_at=dt.datetime(2026, 1, 1, 12, 10, tzinfo=UTC),
        status="ended",
    )
    for i in range(3):
        ReadingFactory(session=noon, sequence=i)
    return world.other_course


def _course_report(api, world, course, query):
    r = api(world.other_instructor).get(f"/api/courses/{course.pk}/report/?{query}")
    assert r.status_code == 200, r.content
    return r.json()


def test_range_ending_at_midnight_keeps_only_the_frames_before_it(world, api, overnight):
    rep = _course_report(api, world, overnight, "from=2026-01-01&to=2026-01-02")
    (row,) = rep["learners"]
    assert rep["sessions"] == row["sessions"] == 2
    assert row["n_frames"] == 3 + 4  # noon's 3, and the 4 attentive frames before midnight
    assert row["presence_ratio"] == 1.0
    assert row["duration_s"] == 600 + 1800  # the overnight session counts until midnight
    assert rep["overall"]["n_frames"] == 7


def test_range_starting_at_midnight_keeps_the_frames_after_it(world, api, overnight):
    for query in ("from=2026-01-02", "from=2026-01-02&to=2026-01-03"):
        rep = _course_report(api, world, overnight, query)
        (row,) = rep["learners"]
        assert rep["sessions"] == row["sessions"] == 1  # the noon session is out of range
        assert row["n_frames"] == 6 and row["presence_ratio"] == 0.0
        assert row["engagement"] == 0.0 and row["band"] == "disengaged"
        assert row["duration_s"] == 1800


def test_range_inside_a_session_clips_frames_and_time(world, api, overnight):
    rep = _course_report(api, world, overnight, "from=2026-01-01T23:55:00Z&to=2026-01-02T00:05:00Z")
    (row,) = rep["learners"]
    assert row["sessions"] == 1
    assert row["n_frames"] == 3  # at -1, 0 and +1 min; +5 min is at `to`, which is excluded
    assert row["presence_ratio"] == pytest.approx(1 / 3)
    assert row["duration_s"] == 600


def test_no_range_counts_whole_sessions(world, api, overnight):
    rep = _course_report(api, world, overnight, "")
    (row,) = rep["learners"]
    assert row["sessions"] == 2 and row["n_frames"] == 13 and row["duration_s"] == 600 + 3600


# --- reversed ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query", ["from=2026-01-02&to=2026-01-01", "from=2026-01-02&to=2026-01-02"]
)
def test_api_rejects_a_reversed_or_empty_range(world, api, query):
    r = api(world.instructor).get(f"/api/courses/{world.course.pk}/report/?{query}")
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["message"].startswith("to: must be later than from")
    assert "to" in err["details"]
    csv_r = api(world.instructor).get(f"/api/courses/{world.course.pk}/report/?format=csv&{query}")
    assert csv_r.status_code == 400


@pytest.fixture
def page(client, world):
    client.force_login(world.instructor)
    return client


@pytest.mark.parametrize(
    "query", ["from=2026-01-02&to=2026-01-01", "from=2026-01-02&to=2026-01-02"]
)
def test_reports_page_rejects_a_reversed_range(page, world, query):
    r = page.get(f"/teach/courses/{world.course.pk}/reports/?{query}")
    assert r.status_code == 400
    assert r.context["error"].startswith("The end date must be after the start date.")
    assert "The end date must be after the start date." in r.content.decode()
    assert "from=" not in r.context["csv_url"]  # the CSV link does not repeat a bad range


def test_reports_page_shows_the_error_message_not_the_error_object(page, world):
    r = page.get(f"/teach/courses/{world.course.pk}/reports/?from=2026-02-30")
    assert r.status_code == 400
    assert r.context["error"].startswith("The start date “2026-02-30” is not a valid date")
    html = r.content.decode()
    assert "The start date “2026-02-30” is not a valid date" in html
    assert "ErrorDetail" not in html and "{" not in r.context["error"]


def test_reports_page_csv_link_keeps_a_utc_offset(page, world, api):
    start = "2000-01-01T00:00:00+01:00"
    r = page.get(f"/teach/courses/{world.course.pk}/reports/", {"from": start})
    assert r.status_code == 200 and r.context["error"] is None
    url = r.context["csv_url"]
    assert "from=2000-01-01T00%3A00%3A00%2B01%3A00" in url and "format=csv" in url
    assert 'href="' + url.replace("&", "&amp;") + '"' in r.content.decode()
    csv_r = page.get(url)
    assert csv_r.status_code == 200 and csv_r["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(csv_r.content.decode())))
    assert [row["learner"] for row in rows] == ["learner_a", "learner_b"]


# --- query counts ----------------------------------------------------------------------------------


def _queries(fn) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


def _add_sessions(world, n):
    for _ in range(n):
        s = LearnerSessionFactory(
            learner=world.learner_a, course=world.course, consent=world.learner_a.consents.get()
        )
        for t in range(3):
            ReadingFactory(session=s, sequence=t)


def test_course_report_query_count_does_not_grow_with_sessions(
    world, django_assert_max_num_queries
):
    from records.selectors import course_report

    week = {"date_from": timezone.now() - dt.timedelta(days=7), "date_to": None}
    world.session_b.delete()
    one = _queries(lambda: course_report(course=world.course, **week))
    _add_sessions(world, 9)
    with django_assert_max_num_queries(one):
        rep = course_report(course=world.course, **week)
    assert rep["sessions"] == 10 and rep["learners"][0]["n_frames"] == 27
    with django_assert_max_num_queries(2):  # the sessions, then all their readings
        course_report(course=world.course, **week)


# --- frames the server could not analyse ----------------------------------------------------------


@pytest.fixture
def with_unanalysable_frames(world):
    """learner_a's session, ended: 6 attentive frames and 4 whose bytes expired before
    inference (analysed_at set, no face, error "frame_expired")."""
    s = world.session_a
    s.status, s.ended_at = "ended", s.started_at + dt.timedelta(seconds=10)
    s.save()
    world.session_b.delete()
    for t in range(10):
        expired = t >= 6
        ReadingFactory(
            session=s,
            sequence=t,
            face_found=not expired,
            error="frame_expired" if expired else "",
            probs=None if expired else probs_for("neutral"),
        )
    return s


def test_frames_the_server_could_not_analyse_are_not_absences(world, api, with_unanalysable_frames):
    s = with_unanalysable_frames
    c = api(world.instructor)
    rep = c.get(f"/api/sessions/{s.pk}/report/").json()
    assert rep["n_frames"] == 6 and rep["presence_ratio"] == 1.0
    assert rep["engagement"] == pytest.approx(1.0)
    tl = c.get(f"/api/sessions/{s.pk}/timeline/?window=5").json()["windows"]
    assert [w["n_frames"] for w in tl] == [5, 1]
    assert [w["presence_ratio"] for w in tl] == [1.0, 1.0]
    course = c.get(f"/api/courses/{world.course.pk}/report/").json()
    (row,) = course["learners"]
    assert row["n_frames"] == 6 and row["presence_ratio"] == 1.0
    assert course["overall"]["n_frames"] == 6 and course["overall"]["presence_ratio"] == 1.0


# --- client clocks off the server's ---------------------------------------------------------------


def test_timeline_keeps_frames_stamped_before_the_start_or_after_the_end(world, api):
    """captured_at is the client's clock (up to the allowed skew off the server's): frames
    stamped 30 s before started_at, or after ended_at, are still in the timeline's windows,
    which stay on the grid anchored at started_at."""
    s = world.session_a
    s.status, s.ended_at = "ended", s.started_at + dt.timedelta(seconds=20)
    s.save()
    offsets = [-30, -29, -25, -12, 0, 5, 19, 24]
    for i, t in enumerate(offsets):
        ReadingFactory(session=s, sequence=i, captured_at=s.started_at + dt.timedelta(seconds=t))
    c = api(world.instructor)
    rep = c.get(f"/api/sessions/{s.pk}/report/").json()
    tl = c.get(f"/api/sessions/{s.pk}/timeline/?window=10").json()["windows"]
    assert sum(w["n_frames"] for w in tl) == rep["n_frames"] == len(offsets)
    assert [(w["start"], w["end"]) for w in tl] == [(t, t + 10.0) for t in range(-30, 30, 10)]
    assert [w["n_frames"] for w in tl] == [3, 1, 0, 2, 1, 1]
    assert tl[0]["start_at"] == pytest.approx(s.started_at.timestamp() - 30)
    # the report's band shares are over the same windows
    assert sum(rep["band_share"].values()) == pytest.approx(1.0)


# --- memory and queries ----------------------------------------------------------------------------


def test_session_report_reads_the_readings_once(world, readings, django_assert_num_queries):
    from records.selectors import session_report
    from tutoring.selectors import session_get

    session = session_get(user=world.instructor, session_id=world.session_a.pk)
    with django_assert_num_queries(1):
        rep = session_report(session=session)
    assert rep["n_frames"] == 20 and rep["band_share"] == {"disengaged": 0.5, "highly engaged": 0.5}


def test_a_very_long_session_gets_wider_windows_not_thousands(world, api):
    """12 hours at the asked-for 10 s would be 4320 windows; the timeline stops at
    MAX_TIMELINE_WINDOWS (2000) with windows a whole multiple of 10 s wide, and says so."""
    s = world.session_a
    s.status, s.ended_at = "ended", s.started_at + dt.timedelta(hours=12)
    s.save()
    offsets = [-25, 0, 5, 3600, 12 * 3600 - 1, 12 * 3600 + 40]  # clocks behind and ahead too
    for i, t in enumerate(offsets):
        ReadingFactory(session=s, sequence=i, captured_at=s.started_at + dt.timedelta(seconds=t))
    c = api(world.instructor)
    body = c.get(f"/api/sessions/{s.pk}/timeline/?window=10").json()
    assert body["window_s"] == 30.0
    tl = body["windows"]
    assert len(tl) == 1 + 1440 + 2 <= 2000
    assert (tl[0]["start"], tl[-1]["end"]) == (-30.0, 12 * 3600 + 60.0)
    assert all(w["end"] - w["start"] == 30.0 for w in tl)
    assert sum(w["n_frames"] for w in tl) == len(offsets)
    assert c.get(f"/api/sessions/{s.pk}/report/").json()["n_frames"] == len(offsets)
    # a short session keeps the window asked for
    short = c.get(f"/api/sessions/{world.session_b.pk}/timeline/?window=5").json()
    assert short["window_s"] == 5.0


# --- the device path's cues (head pose, eyes) -----------------------------------------------------


def _device_cues(yaw: float, eye: float) -> dict:
    return {
        "face": True,
        "box": [0.3, 0.3, 0.3, 0.4],
        "yaw": yaw,
        "pitch": -10.0,
        "roll": 0.0,
        "eye_open_left": eye,
        "eye_open_right": eye,
        "gaze_yaw": None,
        "gaze_pitch": None,
        "center_offset": 0.0,
        "area_fraction": 0.12,
    }


@pytest.fixture
def device_readings(world):
    """Session A: t=0..9 device frames, t=0..3 turned 45° (looking away), t=8, 9 eyes closed;
    t=10..19 server pictures, centred. Session B: server pictures only."""
    for t in range(10):
        ReadingFactory(
            session=world.session_a,
            sequence=t,
            face_source="device",
            cues=_device_cues(45.0 if t < 4 else 0.0, 0.1 if t >= 8 else 0.3),
        )
    for t in range(10, 20):
        ReadingFactory(session=world.session_a, sequence=t)
    for t in range(10):
        ReadingFactory(session=world.session_b, sequence=t)


def test_the_timeline_and_reports_show_looking_away_and_eyes_closed(world, api, device_readings):
    c = api(world.instructor)
    w0, w1 = c.get(f"/api/sessions/{world.session_a.pk}/timeline/?window=10").json()["windows"]
    assert (w0["device_ratio"], w0["looking_away_ratio"], w0["eyes_closed_ratio"]) == (
        1.0,
        0.4,
        0.2,
    )
    assert w0["head_motion"] == pytest.approx(45 * math.sqrt(0.4 * 0.6))  # std of 4×45, 6×0
    assert w0["presence_ratio"] == 1.0 and w0["attention_ratio"] == pytest.approx(0.6)
    # the server window: its cue as before, the device cues marked absent
    assert w1["device_ratio"] == 0.0 and w1["attention_ratio"] == 1.0
    assert (w1["looking_away_ratio"], w1["eyes_closed_ratio"], w1["head_motion"]) == (None,) * 3

    rep = c.get(f"/api/sessions/{world.session_a.pk}/report/").json()
    assert rep["device_ratio"] == 0.5 and rep["looking_away_ratio"] == pytest.approx(0.4)
    assert rep["eyes_closed_ratio"] == pytest.approx(0.2)
    course = c.get(f"/api/courses/{world.course.pk}/report/").json()
    a, b = course["learners"]
    assert a["looking_away_ratio"] == pytest.approx(0.4) and b["looking_away_ratio"] is None
    assert b["device_ratio"] == 0.0 and course["overall"]["device_ratio"] == pytest.approx(10 / 30)


def test_the_csv_has_the_device_columns_rounded(world, api, device_readings):
    c = api(world.instructor)
    text = c.get(f"/api/courses/{world.course.pk}/report/?format=csv").content.decode()
    a, b = csv.DictReader(io.StringIO(text))
    assert (a["looking_away_ratio"], a["eyes_closed_ratio"], a["device_ratio"]) == (
        "0.4",
        "0.2",
        "0.5",
    )
    assert a["head_motion"] == str(round(45 * math.sqrt(0.4 * 0.6), 1))  # degrees, a tenth
    assert b["looking_away_ratio"] == "" and b["device_ratio"] == "0.0"
    session_csv = c.get(f"/api/sessions/{world.session_a.pk}/report/?format=csv").content.decode()
    (row,) = csv.DictReader(io.StringIO(session_csv))
    assert row["eyes_closed_ratio"] == "0.2" and row["band"] in {"engaged", "highly engaged"}


def test_the_reports_use_the_courses_attention_cone(world, api, device_readings):
    world.course.attention_cone_degrees = 50
    world.course.save()
    c = api(world.instructor)
    rep = c.get(f"/api/sessions/{world.session_a.pk}/report/").json()
    assert rep["looking_away_ratio"] == 0.0 and rep["attention_ratio"] == 1.0
    w0 = c.get(f"/api/sessions/{world.session_a.pk}/timeline/").json()["windows"][0]
    assert w0["looking_away_ratio"] == 0.0


def test_the_reports_page_and_timeline_page_show_the_device_cues(world, device_readings):
    from django.test import Client

    client = Client()
    client.force_login(world.instructor)
    page = client.get(f"/teach/courses/{world.course.pk}/reports/").content.decode()
    assert "Looking away" in page and "Eyes closed" in page
    assert '<td data-label="Looking away">40 %</td>' in page
    assert '<td data-label="Looking away">—</td>' in page  # learner B: server pictures only
    assert "camera position only" in page
    session = client.get(f"/teach/sessions/{world.session_a.pk}/").content.decode()
    assert 'id="eyes-chart"' in session and '<dd id="looking-away">40 %</dd>' in session
    assert "on the device in 50 % of pictures" in session
