"""The live tiles' states, the class chart's history and the recorder's flow, seen from both
sides at once, on a laptop (1366×768) and a phone (390×844) screen."""

import re
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from emotion.models import Reading
from tests.browser.conftest import login, shot
from tests.factories import (
    ConsentFactory,
    CourseFactory,
    InstructorFactory,
    LearnerSessionFactory,
    ReadingFactory,
    UserFactory,
    enroll,
)
from tutoring.models import LearnerSession

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PW = "pw-123456"
SCREENS = {"laptop": {"width": 1366, "height": 768}, "phone": {"width": 390, "height": 844}}
ABSENT_S = 10  # the course's threshold: long enough to see "paused" (5 s) before "absent"
TICK = re.compile(r"^(0 s|[1-5] min 00 s)$")  # one tick a minute: "0 s" … "5 min 00 s"


@pytest.fixture
def course(browser):
    teacher = InstructorFactory(username="teacher")
    lina = UserFactory(username="lina", first_name="Lina", last_name="Learner")
    c = CourseFactory(title="Physics 101", instructors=[teacher], alert_absent_seconds=ABSENT_S)
    enroll(c, lina, consent=False)
    ConsentFactory(course=c, learner=lina)
    yield c
    # pages left streaming would write into the database flush between tests: close them,
    # then let the last batch land
    for context in browser.contexts:
        context.close()
    readings, deadline, last = (
        Reading.objects.filter(session__course=c),
        time.monotonic() + 15,
        None,
    )
    while time.monotonic() < deadline:
        now = (readings.count(), readings.filter(analysed_at__isnull=True).count())
        if now == last and now[1] == 0:
            break
        last = now
        time.sleep(1)


class Page:
    """A signed-in page on one screen size that keeps its console errors."""

    def __init__(self, browser, server, username, screen, init_script=""):
        context = browser.new_context(viewport=SCREENS[screen])
        if init_script:
            context.add_init_script(init_script)
        self.page, self.screen, self.errors = context.new_page(), screen, []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        login(self.page, server, username, PW)

    def fits(self):
        """Nothing sticks out sideways (no horizontal scrolling on a phone)."""
        assert self.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
            self.screen
        )


def instructors(browser, server, course):
    pages = [Page(browser, server, "teacher", screen) for screen in SCREENS]
    for p in pages:
        p.page.goto(f"{server}/teach/courses/{course.pk}/live/")
        expect(p.page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    return pages


def tiles(pages, state, timeout=15_000):
    for p in pages:
        tile = p.page.locator('.tile:has-text("Lina Learner")')
        expect(tile).to_have_attribute("data-state", state, timeout=timeout)
    return [p.page.locator('.tile:has-text("Lina Learner")') for p in pages]


CUES_TEXT = re.compile(
    r"^(camera position only|looking away \d{1,3} %( · eyes closed \d{1,3} %)?)$"
)


def test_one_session_through_every_state_on_laptop_and_phone(browser, asgi_server, course):
    teachers = instructors(browser, asgi_server, course)
    for p in teachers:
        tile = p.page.locator('.tile:has-text("Lina Learner")')
        expect(tile).to_have_attribute("data-state", "no-session")
        expect(tile.locator(".values")).to_be_hidden()
        # nobody has recorded: the chart says what to do, its axis reads the last 5 minutes
        expect(p.page.locator("#chart-empty")).to_contain_text("Start a session")
        labels = p.page.evaluate(
            "window.affectLive.engagementChart.scales.x.ticks.map((t) => t.label)"
        )
        assert labels and all(TICK.match(str(x)) for x in labels), labels
        expect(p.page.locator("#present-count")).to_have_text("0 present · 0 recording")
        # alerts are seen without scrolling, on a phone too; charts keep a readable height
        alerts = p.page.locator("#alerts").bounding_box()
        assert alerts["y"] + alerts["height"] <= p.page.viewport_size["height"], alerts
        assert p.page.locator("#engagement-chart").bounding_box()["height"] >= 200

    learner = Page(browser, asgi_server, "lina", "phone")
    learner.page.goto(f"{asgi_server}/learn/courses/{course.pk}/")
    learner.page.get_by_role("button", name="Start a session").click()
    learner.page.wait_for_url(re.compile(r"/learn/sessions/\d+/$"))
    status = learner.page.locator("#status")
    expect(learner.page.get_by_role("button", name="Stop session")).to_be_enabled()
    for tile in tiles(teachers, "waiting"):
        expect(tile.locator(".state")).to_have_text("Waiting for camera")
        expect(tile.locator(".values")).to_be_hidden()

    learner.page.get_by_role("button", name="Start", exact=True).click()
    expect(status).to_have_attribute("data-state", "sending", timeout=20_000)
    for tile in tiles(teachers, "present", timeout=30_000):
        expect(tile.locator(".pct")).to_have_text(re.compile(r"^\d{1,3} %$"), timeout=10_000)
        expect(tile.locator(".emotion")).to_have_text(re.compile(r"Expression: \w+"))
        # the server path says so; the device path gives its head pose and eye cues
        expect(tile.locator(".cues")).to_have_text(CUES_TEXT)
    for p in teachers:
        expect(p.page.locator("#chart-empty")).to_be_hidden(timeout=10_000)
        shot(p.page, f"live-recording-{p.screen}")
        p.fits()
    expect(learner.page.locator("#engagement")).to_have_text(re.compile(r"^\d{1,3} % \("))
    shot(learner.page, "learner-recording-phone")
    learner.fits()

    # Pause: the camera goes, one Resume button; the tiles say paused, then absent only once
    # the course's threshold has passed, with the stale values gone
    learner.page.get_by_role("button", name="Pause").click()
    paused_at = time.monotonic()
    expect(status).to_have_attribute("data-state", "paused")
    expect(learner.page.get_by_role("button", name="Start", exact=True)).to_be_hidden()
    expect(learner.page.get_by_role("button", name="Resume")).to_be_enabled()
    assert learner.page.evaluate("window.affectRecorder.stream") is None
    for tile in tiles(teachers, "paused"):
        expect(tile.locator(".values")).to_be_hidden()
        expect(tile.locator(".detail")).to_contain_text("No picture for")
    for tile in tiles(teachers, "absent"):
        expect(tile.locator(".values")).to_be_hidden()
    assert time.monotonic() - paused_at >= ABSENT_S - 3  # the last face came just before
    for p in teachers:
        alert = p.page.locator('#alerts li[data-kind="absent"]')
        expect(alert).to_contain_text("Lina Learner: absent", timeout=5_000)
        shot(p.page, f"live-absent-{p.screen}")

    learner.page.get_by_role("button", name="Resume").click()
    expect(status).to_have_attribute("data-state", "sending", timeout=20_000)
    assert learner.page.evaluate("window.affectRecorder.stream") is not None
    tiles(teachers, "present", timeout=30_000)
    for p in teachers:
        expect(p.page.locator('#alerts li[data-kind="absent"]')).to_have_count(0)

    # Stop: an end screen with the session's summary and a way back; the tiles say ended
    learner.page.get_by_role("button", name="Stop session").click()
    expect(status).to_have_attribute("data-state", "ended")
    summary = learner.page.locator("#ended-summary")
    expect(summary).to_contain_text(re.compile(r"pictures? analysed · engagement \d{1,3} %"))
    expect(learner.page.get_by_role("button", name="Stop session")).to_be_hidden()
    shot(learner.page, "learner-ended-phone")
    learner.fits()
    for tile in tiles(teachers, "ended"):
        expect(tile.locator(".state")).to_have_text("Session ended")
        expect(tile.locator(".values")).to_be_hidden()
        expect(tile.locator(".since")).to_have_text("")
    learner.page.get_by_role("link", name="Back to Physics 101").click()
    expect(learner.page.get_by_role("button", name="Start a session")).to_be_visible()
    assert LearnerSession.objects.get(course=course).status == "ended"
    assert [p.errors for p in [*teachers, learner]] == [[], [], []]


def test_the_class_chart_starts_from_the_servers_history_and_keeps_it_on_reload(
    browser, asgi_server, course
):
    lina = course.learners.get()
    session = LearnerSessionFactory(learner=lina, course=course, consent=lina.consents.get())
    now = timezone.now()
    for i in range(60):  # a minute of frames that ended a minute ago: six live windows
        at = now - timedelta(seconds=120 - i)
        ReadingFactory(session=session, sequence=i, received_at=at, captured_at=at)
    session.status, session.ended_at = "ended", now - timedelta(seconds=60)
    session.save()
    for p in instructors(browser, asgi_server, course):
        for _ in range(2):  # the first load, then a reload
            p.page.wait_for_function(
                "window.affectLive.engagementChart.data.datasets[0].data.length >= 5",
                timeout=10_000,
            )
            expect(p.page.locator("#chart-empty")).to_be_hidden()
            p.page.reload()
            expect(p.page.locator("#conn")).to_have_attribute("data-state", "live")
        shot(p.page, f"live-history-{p.screen}")
        assert p.errors == []


def test_a_learner_out_of_view_is_face_not_seen_until_the_threshold(browser, asgi_server, course):
    """Frames come with nobody in them: the learner is told, the tile says "face not seen"
    and turns absent only after the course's threshold (it once did after about 6 s)."""
    teachers = instructors(browser, asgi_server, course)
    lina = course.learners.get()
    session = LearnerSessionFactory(learner=lina, course=course, consent=lina.consents.get())
    nobody = "CanvasRenderingContext2D.prototype.drawImage = function () {};"  # black frames
    learner = Page(browser, asgi_server, "lina", "laptop", nobody)
    learner.page.goto(f"{asgi_server}/learn/sessions/{session.pk}/")
    learner.page.get_by_role("button", name="Start", exact=True).click()
    started = time.monotonic()
    for tile in tiles(teachers, "no-face", timeout=20_000):
        expect(tile.locator(".state")).to_have_text("Recording · face not seen")
        expect(tile.locator(".detail")).to_contain_text("No face in the pictures for")
    expect(learner.page.locator("#face-hint")).to_contain_text(
        "can't see your face", timeout=10_000
    )
    shot(learner.page, "learner-no-face-laptop")
    tiles(teachers, "absent", timeout=20_000)
    assert time.monotonic() - started >= ABSENT_S - 2
    for p in teachers:
        expect(p.page.locator(".tile .detail")).to_contain_text("Camera on, no face for")
        assert p.errors == []
    assert learner.errors == []
