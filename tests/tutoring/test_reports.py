"""Timelines and reports against hand-computed numbers.

Session A (emotion on): 20 readings 1 s apart. t=0..9 a centred face (offset 0, so gaze weight
1), neutral with p=1 → frame score 1 × 0.9 / 0.9 = 1. t=10..19 no face → 0.
  window [0,10): presence 1, attention 1, engagement 1.0 (highly engaged), neutral 1.0
  window [10,20): presence 0, engagement 0 (disengaged), no emotion data
  whole session: presence 0.5, engagement 0.5 (engaged)
Session B: 10 happy frames, centred → 0.6 / 0.9 = 0.6667 each (highly engaged).
"""

import csv
import io

import pytest

from tests.factories import ReadingFactory, probs_for


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
