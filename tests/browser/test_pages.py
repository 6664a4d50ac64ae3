"""The learner recording page and the instructor live dashboard, in a real browser."""

import re

import pytest
from playwright.sync_api import expect

from emotion.models import Reading
from tests.browser.conftest import login, shot
from tests.browser.test_recorder import SHIFT_CLOCK
from tests.factories import CourseFactory, InstructorFactory, UserFactory, enroll
from tutoring.models import LearnerSession

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PW = "pw-123456"


@pytest.fixture
def course():
    teacher = InstructorFactory(username="teacher", first_name="Tess", last_name="Teacher")
    learner = UserFactory(username="lina", first_name="Lina", last_name="Learner")
    peer = UserFactory(username="pete", first_name="Pete")
    c = CourseFactory(title="Physics 101", instructors=[teacher], alert_absent_seconds=4)
    enroll(c, learner, consent=False)
    enroll(c, peer, consent=False)
    return c


def test_learner_streams_and_instructor_sees_it_live(browser, asgi_server, course):
    learner_page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    login(learner_page, asgi_server, "lina", PW)
    expect(learner_page.get_by_role("heading", name="My courses")).to_be_visible()
    learner_page.get_by_role("link", name="Physics 101").click()
    expect(learner_page.get_by_text("No video and no raw pictures are stored")).to_be_visible()
    learner_page.get_by_label(re.compile("presence and attention")).check()
    learner_page.get_by_label(re.compile("facial expression")).check()
    learner_page.get_by_role("button", name="Give consent").click()
    expect(learner_page.get_by_text("your consent is recorded")).to_be_visible()
    learner_page.get_by_role("button", name="Start a session").click()
    learner_page.get_by_role("button", name="Start", exact=True).click()
    status = learner_page.locator("#status")
    expect(status).to_have_attribute("data-state", "sending", timeout=20_000)

    teacher_context = browser.new_context(viewport={"width": 1280, "height": 900})
    # the instructor's PC clock runs 2 minutes fast: learners must not all look absent
    teacher_context.add_init_script(SHIFT_CLOCK % (2 * 60 * 1000))
    teacher_page = teacher_context.new_page()
    login(teacher_page, asgi_server, "teacher", PW)
    teacher_page.get_by_role("link", name="Live view").click()
    tile = teacher_page.locator('.tile:has-text("Lina Learner")')
    expect(tile).to_have_attribute("data-state", "present", timeout=30_000)
    expect(tile.locator(".emotion")).to_have_text(re.compile(r"Expression: \w+"), timeout=15_000)
    expect(tile.locator(".band")).to_have_text(re.compile("engaged"))
    expect(teacher_page.locator('.tile:has-text("Pete")')).to_have_attribute(
        "data-state", "no-session"
    )
    teacher_page.wait_for_function(
        "window.affectLive.engagementChart.data.datasets[0].data.length >= 2", timeout=20_000
    )
    teacher_page.wait_for_function(
        "window.affectLive.emotionChart.data.datasets[0].data.some(v => v > 0)", timeout=20_000
    )
    assert int(learner_page.locator("#sent").inner_text()) > 0
    shot(learner_page, "learner-recording")
    shot(teacher_page, "instructor-live")

    # a dropped connection: the page reconnects by itself and carries on numbering
    before = learner_page.evaluate("window.affectRecorder.nextSeq")
    learner_page.evaluate("window.affectRecorder.ws.close()")
    learner_page.wait_for_function(
        f"window.affectRecorder.ready && window.affectRecorder.nextSeq > {before + 2}",
        timeout=20_000,
    )
    expect(status).to_have_attribute("data-state", "sending")
    session = LearnerSession.objects.get(learner__username="lina")
    seqs = list(Reading.objects.filter(session=session).values_list("sequence", flat=True))
    assert len(seqs) == len(set(seqs)) and max(seqs) >= before

    # pausing the stream turns the learner absent once the course's timeout has passed
    learner_page.get_by_role("button", name="Pause").click()
    expect(status).to_have_attribute("data-state", "paused")
    expect(tile).to_have_attribute("data-state", "absent", timeout=20_000)
    # …and an alert says so, though no summary comes while nobody's frames are analysed
    alert = teacher_page.locator('#alerts li[data-kind="absent"]')
    expect(alert).to_contain_text("Lina Learner: absent", timeout=5_000)
    expect(teacher_page.locator("#alerts-announce")).to_contain_text("New alert: Lina Learner")
    shot(teacher_page, "instructor-live-absent")

    # drill-down: the session timeline chart gets its windows from the API
    tile.get_by_role("link", name="Session timeline").click()
    teacher_page.wait_for_function(
        "window.affectTimeline && window.affectTimeline.windows.length > 0", timeout=15_000
    )
    shot(teacher_page, "instructor-session-timeline")

    # stopping ends the session on the server
    learner_page.get_by_role("button", name="Stop session").click()
    expect(status).to_have_attribute("data-state", "ended")

    teacher_page.goto(f"{asgi_server}/teach/courses/{course.pk}/reports/")
    row = teacher_page.locator("tbody tr", has_text="lina")
    expect(row).to_be_visible()
    href = teacher_page.get_by_role("link", name="Download CSV").get_attribute("href")
    csv = teacher_page.request.get(f"{asgi_server}{href}")
    assert csv.ok and "lina" in csv.text()
    shot(teacher_page, "instructor-reports")


def test_learner_cannot_open_instructor_pages(browser, asgi_server, course):
    page = browser.new_context().new_page()
    login(page, asgi_server, "lina", PW)
    for path in (
        f"/teach/courses/{course.pk}/live/",
        "/teach/",
        f"/teach/courses/{course.pk}/reports/",
    ):
        response = page.goto(f"{asgi_server}{path}")
        assert response.status == 403
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.get_by_role("link", name="API")).to_have_count(0)  # role-based navigation


def test_camera_denied_shows_the_right_message(
    browser_without_camera_permission, asgi_server, course
):
    from tests.factories import ConsentFactory

    ConsentFactory(course=course, learner=course.learners.get(username="lina"))
    lina = course.learners.get(username="lina")
    page = browser_without_camera_permission.new_context().new_page()
    login(page, asgi_server, "lina", PW)
    page.goto(f"{asgi_server}/learn/courses/{course.pk}/")
    page.get_by_role("button", name="Start a session").click()
    # the camera is asked for before a session exists: none is started for a denied one
    check = page.locator("#camera-check")
    expect(check).to_have_attribute("data-state", "camera-denied", timeout=15_000)
    expect(check).to_contain_text("Camera access was denied")
    expect(check).to_contain_text("No session was started")
    assert not LearnerSession.objects.filter(learner=lina).exists()
    shot(page, "learner-camera-denied-course")

    # a session that exists (another device started it) says the same, and can be ended
    from tests.factories import LearnerSessionFactory

    session = LearnerSessionFactory(learner=lina, course=course, consent=lina.consents.get())
    page.goto(f"{asgi_server}/learn/sessions/{session.pk}/")
    page.get_by_role("button", name="Start", exact=True).click()
    status = page.locator("#status")
    expect(status).to_have_attribute("data-state", "camera-denied", timeout=15_000)
    expect(status).to_contain_text("Camera access was denied")
    shot(page, "learner-camera-denied")
    page.get_by_role("button", name="Stop session").click()
    expect(status).to_have_attribute("data-state", "ended")
    expect(page.get_by_role("link", name="Back to Physics 101")).to_be_visible()
    assert LearnerSession.objects.get(pk=session.pk).status == "ended"


def test_anonymous_visitors_are_sent_to_login(browser, asgi_server, course):
    page = browser.new_context().new_page()
    page.goto(f"{asgi_server}/teach/courses/{course.pk}/live/")
    assert "/accounts/login/" in page.url
    expect(page.get_by_role("button", name="Log in")).to_be_visible()


def test_policy_change_asks_for_consent_again_and_the_learner_erases_their_data(
    browser, asgi_server, course
):
    from tests.factories import ConsentFactory, LearnerSessionFactory, ReadingFactory
    from tutoring import services
    from tutoring.models import Course

    lina = course.learners.get(username="lina")
    consent = ConsentFactory(course=course, learner=lina)
    ReadingFactory.create_batch(
        3, session=LearnerSessionFactory(learner=lina, course=course, consent=consent)
    )
    edited = Course.objects.get(pk=course.pk)
    edited.keep_face_crops = True
    services.course_update(course=edited)

    page = browser.new_context().new_page()
    login(page, asgi_server, "lina", PW)
    page.goto(f"{asgi_server}/learn/courses/{course.pk}/")
    expect(page.get_by_role("alert")).to_contain_text("data policy has changed")
    expect(page.get_by_text("keeps a small 48×48 grey thumbnail")).to_be_visible()  # new terms
    expect(page.get_by_role("button", name="Start a session")).to_have_count(0)
    page.get_by_label(re.compile("presence and attention")).check()
    page.get_by_role("button", name="Give consent").click()
    expect(page.get_by_role("button", name="Start a session")).to_be_visible()

    page.get_by_role("link", name="erase it").click()
    expect(page.get_by_role("heading", name="Erase my data")).to_be_visible()
    page.get_by_label(re.compile("to confirm")).fill("ERASE")
    page.get_by_role("button", name="Erase my data").click()
    page.wait_for_load_state()
    shot(page, "learner-data-erased")
    assert not Reading.objects.filter(session__learner=lina).exists()
    assert not LearnerSession.objects.filter(learner=lina).exists()
