"""The instructor's reports, session history and session timeline in Chromium, on a laptop
(1366×768) and a phone (390×844): nothing scrolls sideways, rows lead somewhere, the timeline
shows every series and says why it has gaps, and no script fails."""

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from ml.classes import EMOTIONS
from tests.browser.conftest import BASE_ARGS, CHROMIUM, login, shot
from tests.factories import (
    CourseFactory,
    InstructorFactory,
    LearnerSessionFactory,
    ReadingFactory,
    UserFactory,
    enroll,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PW = "pw-123456"
VIEWPORTS = {"laptop": (1366, 768), "phone": (390, 844)}
NO_OVERFLOW = "document.documentElement.scrollWidth <= window.innerWidth"


@pytest.fixture(scope="module")
def chromium(playwright_instance):
    b = playwright_instance.chromium.launch(executable_path=CHROMIUM, headless=True, args=BASE_ARGS)
    yield b
    b.close()


@pytest.fixture
def course():
    """A course with emotion on, a learner with long names and a 2-minute session: a face for
    40 s (the last 20 s found on the device, turned away from 0:30), 40 s of nothing (paused),
    40 s of pictures without a face."""
    teacher = InstructorFactory(username="teacher")
    lina = UserFactory(username="lina", first_name="Lina-Marie", last_name="Learner-Lindqvist")
    pete = UserFactory(username="pete", first_name="Pete")
    c = CourseFactory(title="Physics 101", instructors=[teacher], emotion_inference_enabled=True)
    enroll(c, lina, pete)
    s = LearnerSessionFactory(learner=lina, course=c, consent=lina.consents.get())
    s.started_at -= timedelta(hours=1)
    s.status, s.ended_at, s.end_reason = "ended", s.started_at + timedelta(seconds=120), "ended"
    s.save()
    probs = {e: (0.6 if e == "happy" else 0.4 / (len(EMOTIONS) - 1)) for e in EMOTIONS}
    for t in range(0, 40, 2):
        device = {"face_source": "device", "cues": _device_cues(40.0 if t >= 30 else 0.0)}
        ReadingFactory(session=s, sequence=t, probs=probs, **(device if t >= 20 else {}))
    for t in range(80, 120, 2):
        ReadingFactory(session=s, sequence=t, face_found=False)
    LearnerSessionFactory(learner=pete, course=c, consent=pete.consents.get())
    return c


def _device_cues(yaw: float) -> dict:
    return {
        "face": True,
        "box": [0.3, 0.3, 0.3, 0.4],
        "yaw": yaw,
        "pitch": 0.0,
        "roll": 0.0,
        "eye_open_left": 0.3,
        "eye_open_right": 0.3,
        "center_offset": 0.0,
        "area_fraction": 0.12,
    }


def _page(chromium, server, viewport):
    width, height = VIEWPORTS[viewport]
    page = chromium.new_context(viewport={"width": width, "height": height}).new_page()
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    login(page, server, "teacher", PW)
    return page, problems


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_reports_history_and_timeline(chromium, asgi_server, course, viewport):
    page, problems = _page(chromium, asgi_server, viewport)
    page.goto(f"{asgi_server}/teach/courses/{course.pk}/reports/")
    expect(page.get_by_text("overall engagement")).to_contain_text("%")
    report = page.locator("#report-table tbody tr")
    expect(
        report.filter(has_text="Lina-Marie").locator('[data-label="Looking away"]')
    ).to_have_text("50 %")
    expect(report.filter(has_text="Pete").locator('[data-label="Eyes closed"]')).to_have_text("—")
    assert page.evaluate(NO_OVERFLOW)
    shot(page, f"instructor-reports-{viewport}")

    page.get_by_role("link", name="Lina-Marie Learner-Lindqvist", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("sessions of Lina-Marie")
    rows = page.locator("#sessions-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("2 min 00 s")
    expect(rows.first).to_contain_text("stopped by the learner")
    assert page.evaluate(NO_OVERFLOW)
    shot(page, f"instructor-sessions-{viewport}")

    rows.first.get_by_role("link", name="Timeline").click()
    page.wait_for_function("window.affectTimeline && window.affectTimeline.windows.length > 0")
    charts = page.evaluate(
        """() => Object.fromEntries(Object.entries(window.affectTimeline.charts).map(([k, c]) =>
             [k, {height: c.height, series: c.data.datasets.map((d, i) =>
               [d.label, c.isDatasetVisible(i), d.data.filter((p) => p.y != null).length])}]))"""
    )
    assert set(charts) == {"engagement", "presence", "expression"}
    assert all(c["height"] >= 200 for c in charts.values()), charts
    presence = {label: (shown, n) for label, shown, n in charts["presence"]["series"]}
    # 12 windows, 4 without frames: 8 with a value, drawn as 3 points each (a flat step)
    assert presence == {"attention": (True, 24), "presence": (True, 24)}
    # the seven emotions and, in grey on top, the share shown as "uncertain" (issue 24)
    assert {s[0] for s in charts["expression"]["series"]} == set(EMOTIONS) | {"uncertain"}
    eyes = page.evaluate(
        """() => window.affectTimeline.eyes.data.datasets.map((d) =>
             [d.label, d.data.filter((p) => p.y != null).map((p) => p.y)])"""
    )
    # device frames in the windows 0:20–0:30 (facing) and 0:30–0:40 (turned away)
    assert eyes == [["looking away", [0, 0, 0, 1, 1, 1]], ["eyes closed", [0, 0, 0, 0, 0, 0]]]
    gaps = page.locator("#timeline-gaps li")
    expect(gaps).to_have_text(
        ["0:40–1:20: no pictures (paused, camera off or offline)", "1:20–2:00: no face in view"]
    )
    expect(page.locator("#back-link")).to_have_attribute(
        "href", f"/teach/courses/{course.pk}/sessions/"
    )
    assert page.evaluate(NO_OVERFLOW)
    shot(page, f"instructor-session-timeline-{viewport}")

    page.goto(f"{asgi_server}/teach/courses/{course.pk}/reports/?from=2026-02-02&to=2026-02-01")
    expect(page.get_by_role("alert")).to_have_text(
        "The end date must be after the start date. The report includes the start date and "
        "stops before the end date."
    )
    expect(page.locator("table")).to_have_count(0)
    assert page.evaluate(NO_OVERFLOW)
    assert [p for p in problems if "status of 400" not in p] == []
