"""The label review page in Chromium, under the Content-Security-Policy: one key labels a
reading, on a laptop screen and on a phone, with no console error and no CSP violation."""

import cv2
import numpy as np
import pytest
from playwright.sync_api import expect

from emotion.models import Reading
from tests.browser.conftest import BASE_ARGS, CHROMIUM, login, shot
from tests.factories import (
    AdminFactory,
    CourseFactory,
    LearnerSessionFactory,
    ReadingFactory,
    UserFactory,
    enroll,
)
from tests.servers import serve

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

COLLECT = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
"""


@pytest.fixture(scope="module")
def csp_server(django_db_setup, tmp_path_factory):
    with serve(tmp_path_factory.mktemp("review-server"), CONTENT_SECURITY_POLICY="on") as url:
        yield url


@pytest.fixture(scope="module")
def chromium(playwright_instance):
    b = playwright_instance.chromium.launch(executable_path=CHROMIUM, headless=True, args=BASE_ARGS)
    yield b
    b.close()


@pytest.fixture
def crops():
    """Two readings with a kept face crop, waiting for review, and a reviewer."""
    AdminFactory(username="reviewer", first_name="Rita", last_name="Reviewer")
    learner = UserFactory(username="lina")
    course = CourseFactory(title="Physics 101", keep_face_crops=True)
    enroll(course, learner)
    session = LearnerSessionFactory(learner=learner, course=course, consent=learner.consents.get())
    face = np.tile(np.arange(48, dtype=np.uint8) * 5, (48, 1))
    png = cv2.imencode(".png", face)[1].tobytes()
    return [ReadingFactory(session=session, sequence=i, face_crop=png) for i in range(2)]


@pytest.mark.parametrize("width,height", [(1366, 768), (390, 844)], ids=["laptop", "phone"])
def test_one_key_labels_a_reading(chromium, csp_server, crops, width, height):
    context = chromium.new_context(viewport={"width": width, "height": height})
    context.add_init_script(COLLECT)
    page = context.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    login(page, csp_server, "reviewer", "pw-123456")
    page.get_by_role("link", name="Label review").click()
    expect(page.locator("#review-progress")).to_have_text("0 of 2 reviewed")
    crop, happy = page.locator("img.crop"), page.get_by_role("button", name="happy")
    for el in (crop, happy, page.get_by_role("button", name="neutral"), page.locator("#skip")):
        expect(el).to_be_in_viewport()  # no scrolling to judge and label a face
    assert crop.bounding_box()["width"] >= 144  # the 48×48 crop, scaled up (3× at least)
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing off-screen
    shot(page, f"label-review-{width}")

    page.keyboard.press("4")  # happy
    expect(page.locator("#review-progress")).to_have_text("1 of 2 reviewed")
    first = Reading.objects.get(pk=crops[0].pk)
    assert first.reviewed_label == "happy" and first.reviewed_by.username == "reviewer"
    page.keyboard.press("0")  # skip the second: it stays in the queue
    expect(page.locator("#review-progress")).to_have_text("1 of 2 reviewed")
    page.keyboard.press("n")  # neutral, by its letter
    expect(page.get_by_text("All done")).to_be_visible()
    assert Reading.objects.get(pk=crops[1].pk).reviewed_label == "neutral"

    assert page.evaluate("window.__csp") == [] and errors == []
    context.close()
