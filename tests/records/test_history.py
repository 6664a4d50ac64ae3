"""The instructor's session history (newest first, a page at a time, one learner's), the
reports page's links and messages, the CSV's precision and the timeline's gaps."""

import csv
import io
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from records import selectors
from tests.factories import LearnerSessionFactory, ReadingFactory, probs_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def page(client, world):
    client.force_login(world.instructor)
    return client


def _rows(html: str) -> list[str]:
    return re.findall(r'href="/teach/sessions/(\d+)/"', html)


def test_history_lists_sessions_newest_first_with_their_numbers(page, world):
    now = timezone.now()
    world.session_a.started_at = now - timedelta(hours=2)
    world.session_a.save()
    for t in range(20):  # the expression counts in engagement: not all neutral
        probs = probs_for("happy" if t % 2 else "neutral", 0.7)
        ReadingFactory(session=world.session_a, sequence=t, face_found=t < 10, probs=probs)
    world.session_b.started_at = now - timedelta(hours=1)
    world.session_b.status, world.session_b.ended_at = "ended", now - timedelta(minutes=50)
    world.session_b.end_reason = "idle"
    world.session_b.save()
    r = page.get(f"/teach/courses/{world.course.pk}/sessions/")
    assert r.status_code == 200
    html = r.content.decode()
    assert _rows(html) == [str(world.session_b.pk), str(world.session_a.pk)]
    a = next(row for row in r.context["rows"] if row["session"] == world.session_a)
    assert a["n_frames"] == 20 and a["presence_ratio"] == 0.5
    assert "50 %" in html and "10 min 00 s" in html  # presence; session b's duration
    assert "no pictures for a long while (idle)" in html and "live" in html
    report = selectors.session_report(session=world.session_a)
    assert a["engagement"] == pytest.approx(report["engagement"])  # the timeline page's figure
    assert "0.5" not in re.sub(r"<[^>]+>", "", html).split("newest first")[1]  # no raw ratios


def test_history_filters_by_learner_and_pages(page, world):
    for k in range(selectors.HISTORY_PAGE_SIZE + 2):
        LearnerSessionFactory(
            learner=world.learner_a,
            course=world.course,
            consent=world.learner_a.consents.get(),
            started_at=timezone.now() - timedelta(days=k + 1),
            status="ended",
            ended_at=timezone.now() - timedelta(days=k + 1) + timedelta(minutes=5),
        )
    url = f"/teach/courses/{world.course.pk}/sessions/"
    r = page.get(url, {"learner": world.learner_a.pk})
    assert r.context["page"].paginator.count == selectors.HISTORY_PAGE_SIZE + 3
    assert all(row["session"].learner == world.learner_a for row in r.context["rows"])
    assert len(r.context["rows"]) == selectors.HISTORY_PAGE_SIZE
    assert f'href="?learner={world.learner_a.pk}&amp;page=2"' in r.content.decode()
    second = page.get(url, {"learner": world.learner_a.pk, "page": 2})
    assert len(second.context["rows"]) == 3
    assert page.get(url, {"learner": "nobody"}).context["learner"] is None  # all learners


def test_history_is_for_the_course_instructors(client, world):
    client.force_login(world.other_instructor)
    assert client.get(f"/teach/courses/{world.course.pk}/sessions/").status_code == 404
    client.force_login(world.learner_a)
    assert client.get(f"/teach/courses/{world.course.pk}/sessions/").status_code == 403


def test_report_rows_link_to_the_learners_sessions(page, world):
    ReadingFactory(session=world.session_a, sequence=0)
    html = page.get(f"/teach/courses/{world.course.pk}/reports/").content.decode()
    link = f'href="/teach/courses/{world.course.pk}/sessions/?learner={world.learner_a.pk}"'
    assert link in html and "100 %" in html


def test_a_reversed_range_shows_the_message_and_no_table(page, world):
    ReadingFactory(session=world.session_a, sequence=0)
    r = page.get(f"/teach/courses/{world.course.pk}/reports/?from=2026-01-02&to=2026-01-01")
    html = r.content.decode()
    assert r.status_code == 400 and "The end date must be after the start date." in html
    assert "<table" not in html and "report" not in r.context
    assert 'value="2026-01-02"' in html  # the form keeps what was sent, to correct it
    bad_end = page.get(f"/teach/courses/{world.course.pk}/reports/?to=2026-13-01")
    assert bad_end.context["error"].startswith("The end date “2026-13-01” is not a valid date")


def test_csv_values_are_rounded_json_keeps_full_precision(world, api):
    for t in range(3):
        ReadingFactory(session=world.session_a, sequence=t, face_found=t == 0)
    c = api(world.instructor)
    body = c.get(f"/api/courses/{world.course.pk}/report/").json()
    assert body["learners"][0]["presence_ratio"] == pytest.approx(1 / 3, abs=1e-12)
    r = c.get(f"/api/courses/{world.course.pk}/report/?format=csv")
    row = next(csv.DictReader(io.StringIO(r.content.decode())))
    assert (
        row["learner"] == "learner_a"
        and row["presence_ratio"] == "0.333"
        and row["attention_ratio"] == "0.333"
    )
    r = c.get(f"/api/sessions/{world.session_a.pk}/report/?format=csv")
    (row,) = csv.DictReader(io.StringIO(r.content.decode()))
    assert row["presence_ratio"] == "0.333"
    assert all(len(v.partition(".")[2]) <= 3 for v in row.values() if re.fullmatch(r"\d+\.\d+", v))


def test_timeline_names_its_gaps(world, api):
    s = world.session_a
    for t in range(10):  # 0–10 s: a face; 10–30 s: nothing; 30–40 s: frames without a face
        ReadingFactory(session=s, sequence=t)
    for t in range(30, 40):
        ReadingFactory(session=s, sequence=t, face_found=False)
    s.status, s.ended_at = "ended", s.started_at + timedelta(seconds=40)
    s.save()
    body = api(world.instructor).get(f"/api/sessions/{s.pk}/timeline/?window=10").json()
    assert body["gaps"] == [
        {"kind": "no_frames", "start": 10.0, "end": 30.0},
        {"kind": "no_face", "start": 30.0, "end": 40.0},
    ]


def test_session_page_links_back_and_formats_numbers(page, world):
    ReadingFactory(session=world.session_a, sequence=0)
    html = page.get(f"/teach/sessions/{world.session_a.pk}/").content.decode()
    assert f'href="/teach/courses/{world.course.pk}/sessions/" id="back-link"' in html
    assert f"?learner={world.learner_a.pk}" in html and "100 %" in html
    assert 'id="expression-chart"' in html  # the course has emotion inference on
