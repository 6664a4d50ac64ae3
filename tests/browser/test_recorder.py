"""The recorder and the instructor pages when things go wrong: a computer clock that is off,
pictures the server refuses, a Stop that cannot reach the server, a camera that stops or is
busy, a timeline that cannot load."""

import re
import time

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from emotion.models import Reading
from tests.browser.conftest import login
from tests.factories import (
    ConsentFactory,
    CourseFactory,
    InstructorFactory,
    LearnerSessionFactory,
    UserFactory,
    enroll,
)
from tutoring.models import LearnerSession

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PW = "pw-123456"

SHIFT_CLOCK = """
(() => {
  const shift = %d, RealDate = Date;
  class ShiftedDate extends RealDate {
    constructor(...a) { if (a.length) super(...a); else super(RealDate.now() + shift); }
    static now() { return RealDate.now() + shift; }
  }
  window.Date = ShiftedDate;
})();
"""


@pytest.fixture
def session(transactional_db, browser):
    teacher = InstructorFactory(username="teacher")
    learner = UserFactory(username="lina", first_name="Lina", last_name="Learner")
    course = CourseFactory(title="Physics 101", instructors=[teacher])
    enroll(course, learner, consent=False)
    consent = ConsentFactory(course=course, learner=learner)
    s = LearnerSessionFactory(learner=learner, course=course, consent=consent)
    yield s
    # A page left open goes on streaming into the server, whose writes then deadlock with the
    # database flush between tests: close the pages, then let the last batch land.
    for context in browser.contexts:
        context.close()
    readings, deadline, last = Reading.objects.filter(session=s), time.monotonic() + 15, None
    while time.monotonic() < deadline:  # quiet: nothing new and nothing pending for 1 s
        now = (readings.count(), readings.filter(analysed_at__isnull=True).count())
        if now == last and now[1] == 0:
            break
        last = now
        time.sleep(1)


def recorder(browser, server, session, init_script: str = "", query: str = ""):
    context = browser.new_context()
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    login(page, server, "lina", PW)
    page.goto(f"{server}/learn/sessions/{session.pk}/{query}")
    return page, page.locator("#status")


def test_a_computer_clock_two_hours_behind_still_records(browser, asgi_server, session):
    page, status = recorder(browser, asgi_server, session, SHIFT_CLOCK % (-2 * 3600 * 1000))
    page.get_by_role("button", name="Start", exact=True).click()
    expect(status).to_have_attribute("data-state", "sending", timeout=20_000)
    page.wait_for_function("window.affectRecorder.sent >= 3", timeout=20_000)
    page.wait_for_function(
        "window.affectRecorder.nextSeq >= 3 && window.affectRecorder.rejected === 0"
    )
    expect(status).to_have_attribute("data-state", "sending")
    # the frames carry the server's time, not the computer's
    stamps = list(Reading.objects.filter(session=session).values_list("captured_at", flat=True))
    assert stamps and all(abs((timezone.now() - t).total_seconds()) < 120 for t in stamps)


def test_pictures_the_server_refuses_are_said_not_counted_as_recording(
    browser, asgi_server, session
):
    not_an_image = """
      HTMLCanvasElement.prototype.toBlob = function (cb) { cb(new Blob(["not a picture"])); };
    """
    # full pictures are the fallback path (the face model analyses on the device otherwise):
    # a model folder that is not there makes the page send pictures
    page, status = recorder(
        browser, asgi_server, session, not_an_image, "?device_models=/static/no-such-model/"
    )
    page.get_by_role("button", name="Start", exact=True).click()
    expect(status).to_have_attribute("data-state", "refusing", timeout=20_000)
    expect(status).to_contain_text("Not a JPEG or PNG image")
    assert not Reading.objects.filter(session=session).exists()


def test_a_stop_that_cannot_reach_the_server_says_so_and_can_be_retried(
    browser, asgi_server, session
):
    page, status = recorder(browser, asgi_server, session)
    page.get_by_role("button", name="Start", exact=True).click()
    expect(status).to_have_attribute("data-state", "sending", timeout=20_000)
    page.route("**/end/", lambda route: route.abort())
    page.get_by_role("button", name="Stop session").click()
    expect(status).to_have_attribute("data-state", "end-failed")
    expect(status).to_contain_text("could not be reached")
    assert LearnerSession.objects.get(pk=session.pk).status == "active"
    page.unroute("**/end/")
    page.get_by_role("button", name="Stop session").click()
    expect(status).to_have_attribute("data-state", "ended")
    assert LearnerSession.objects.get(pk=session.pk).status == "ended"


def test_a_camera_that_stops_is_noticed_and_can_be_started_again(browser, asgi_server, session):
    page, status = recorder(browser, asgi_server, session)
    page.get_by_role("button", name="Start", exact=True).click()
    expect(status).to_have_attribute("data-state", "sending", timeout=20_000)
    page.evaluate("window.affectRecorder.stream.getVideoTracks()[0].stop()")
    expect(status).to_have_attribute("data-state", "camera-lost", timeout=5_000)
    sent = page.evaluate("window.affectRecorder.sent")
    page.wait_for_timeout(1500)
    assert page.evaluate("window.affectRecorder.sent") == sent  # nothing sent meanwhile
    page.get_by_role("button", name="Start", exact=True).click()
    expect(status).to_have_attribute("data-state", "sending", timeout=20_000)
    page.wait_for_function(f"window.affectRecorder.sent > {sent}", timeout=20_000)


def test_a_camera_in_use_by_another_program_gets_its_own_message(browser, asgi_server, session):
    busy = """
      navigator.mediaDevices.getUserMedia = () =>
        Promise.reject(new DOMException("Could not start video source", "NotReadableError"));
    """
    page, status = recorder(browser, asgi_server, session, busy)
    page.get_by_role("button", name="Start", exact=True).click()
    expect(status).to_have_attribute("data-state", "camera-busy")
    expect(status).to_contain_text("in use by another program")


def test_a_timeline_that_cannot_load_says_why(browser, asgi_server, session):
    page = browser.new_context().new_page()
    login(page, asgi_server, "teacher", PW)
    page.route(
        "**/timeline/**",
        lambda route: route.fulfill(
            status=429,
            content_type="application/json",
            body='{"error": {"status": 429, "code": "throttled", "message": "Request was throttled."}}',
        ),
    )
    page.goto(f"{asgi_server}/teach/sessions/{session.pk}/")
    expect(page.locator("#timeline-error")).to_contain_text("Request was throttled")


def test_a_learner_who_leaves_a_running_camera_gets_an_absent_alert(browser, asgi_server, session):
    """Frames keep coming but show nobody: the tile and an alert say absent (the alert once
    came only from frames stopping)."""
    course = session.course
    course.alert_absent_seconds = 4
    course.save()
    nobody = "CanvasRenderingContext2D.prototype.drawImage = function () {};"  # black frames
    learner, status = recorder(browser, asgi_server, session, nobody)
    learner.get_by_role("button", name="Start", exact=True).click()
    expect(status).to_have_attribute("data-state", "sending", timeout=20_000)
    teacher = browser.new_context().new_page()
    login(teacher, asgi_server, "teacher", PW)
    teacher.goto(f"{asgi_server}/teach/courses/{course.pk}/live/")
    tile = teacher.locator('.tile:has-text("Lina Learner")')
    expect(tile).to_have_attribute("data-state", "absent", timeout=20_000)
    expect(tile.locator(".since")).to_have_text(re.compile(r"last picture [0-4] s ago"))
    alert = teacher.locator('#alerts li[data-kind="absent"]')
    expect(alert).to_contain_text("Lina Learner: absent", timeout=10_000)
    assert learner.evaluate("window.affectRecorder.sent") > 0
