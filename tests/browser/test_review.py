"""The label review page in Chromium, under the Content-Security-Policy, on a laptop screen
and on a phone: reviewer A labels with one key, reviewer B gets the same face as a blind
second review, and the agreement panel shows kappa once enough readings are doubly reviewed;
no console error and no CSP violation."""

import cv2
import numpy as np
import pytest
from playwright.sync_api import expect

from emotion.models import LabelReview, Reading
from emotion.selectors import KAPPA_MIN_PAIRS
from emotion.services import reading_review
from tests.browser.conftest import BASE_ARGS, CHROMIUM, login, shot
from tests.factories import (
    AdminFactory,
    CourseFactory,
    LearnerSessionFactory,
    ReadingFactory,
    UserFactory,
    enroll,
    probs_for,
)
from tests.servers import serve

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

COLLECT = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
"""

#: the doubly reviewed readings made beforehand (first label, second label): with the pair the
#: test adds (happy, happy), 20 pairs, A happy 10 / sad 10, B happy 12 / sad 8, 18 agree:
#: p_o 0.9, p_e 0.5, kappa 0.80
EARLIER = [("happy", "happy")] * 9 + [("sad", "happy")] * 2 + [("sad", "sad")] * 8


@pytest.fixture(scope="module")
def csp_server(django_db_setup, tmp_path_factory):
    # every reading takes a second review here, so B is offered the face A labels
    with serve(
        tmp_path_factory.mktemp("review-server"),
        CONTENT_SECURITY_POLICY="on",
        REVIEW_SECOND_SHARE="1",
    ) as url:
        yield url


@pytest.fixture(scope="module")
def chromium(playwright_instance):
    b = playwright_instance.chromium.launch(executable_path=CHROMIUM, headless=True, args=BASE_ARGS)
    yield b
    b.close()


@pytest.fixture
def crops():
    """Two readings waiting for review (an uncertain one, a sampled one), two reviewers, and
    19 readings both already reviewed."""
    a = AdminFactory(username="reviewer", first_name="Rita", last_name="Reviewer")
    b = AdminFactory(username="second", first_name="Sam", last_name="Second")
    learner = UserFactory(username="lina")
    course = CourseFactory(title="Physics 101", keep_face_crops=True)
    enroll(course, learner)
    session = LearnerSessionFactory(learner=learner, course=course, consent=learner.consents.get())
    face = np.tile(np.arange(48, dtype=np.uint8) * 5, (48, 1))
    png = cv2.imencode(".png", face)[1].tobytes()
    for k, (first, second) in enumerate(EARLIER):
        reading = ReadingFactory(session=session, sequence=k, face_crop=png, review_reason="sample")
        reading_review(reading=reading, label=first, reviewer=a)
        reading_review(reading=reading, label=second, reviewer=b)
    assert len(EARLIER) == KAPPA_MIN_PAIRS - 1
    return [
        ReadingFactory(
            session=session,
            sequence=100 + k,
            face_crop=png,
            review_reason=reason,
            probs=probs_for("fear", 0.4),
            uncertain=reason == "uncertain",
        )
        for k, reason in enumerate(["sample", "uncertain"])
    ]


def open_review(chromium, url, username, width, height):
    context = chromium.new_context(viewport={"width": width, "height": height})
    context.add_init_script(COLLECT)
    page = context.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    login(page, url, username, "pw-123456")
    page.get_by_role("link", name="Label review").click()
    return context, page, errors


def fits(page, width):
    crop, happy = page.locator("img.crop"), page.get_by_role("button", name="happy")
    for el in (crop, happy, page.get_by_role("button", name="neutral"), page.locator("#skip")):
        expect(el).to_be_in_viewport()  # no scrolling to judge and label a face
    assert crop.bounding_box()["width"] >= 144  # the 48×48 crop, scaled up (3× at least)
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing off-screen


@pytest.mark.parametrize("width,height", [(1366, 768), (390, 844)], ids=["laptop", "phone"])
def test_two_reviewers_label_blind_and_kappa_appears(chromium, csp_server, crops, width, height):
    sampled, uncertain = crops
    context, page, errors = open_review(chromium, csp_server, "reviewer", width, height)
    expect(page.locator("#review-progress")).to_have_text("2 waiting for you · 19 of 21 reviewed")
    expect(page.locator("#review-stage")).to_have_text("First review · uncertain")  # first
    expect(page.locator("#blind")).to_contain_text("the model's guess is hidden")
    expect(page.locator("#kappa")).to_have_text(
        "— needs at least 20 doubly reviewed readings (19 so far)"
    )
    fits(page, width)
    shot(page, f"label-review-{width}")

    page.keyboard.press("4")  # happy
    expect(page.locator("#review-stage")).to_have_text("First review · random sample")
    assert Reading.objects.get(pk=uncertain.pk).reviewed_label == "happy"
    page.keyboard.press("0")  # skip: the only one left for A comes round again
    expect(page.locator("#review-progress")).to_have_text("1 waiting for you · 20 of 21 reviewed")
    page.keyboard.press("n")  # neutral, by its letter
    expect(page.get_by_text("All done")).to_be_visible()
    assert Reading.objects.get(pk=sampled.pk).reviewed_label == "neutral"
    assert page.evaluate("window.__csp") == [] and errors == []
    context.close()

    context, page, errors = open_review(chromium, csp_server, "second", width, height)
    expect(page.locator("#review-stage")).to_have_text("Second review · uncertain")
    expect(page.locator("#blind")).to_contain_text(
        "the model's guess and the other reviews are hidden"
    )
    assert page.locator("#model-label, .model-guess").count() == 0
    assert "Rita" not in page.content()  # A's name and label are nowhere on B's page
    fits(page, width)
    shot(page, f"label-review-second-{width}")
    page.keyboard.press("4")  # happy too: the twentieth pair
    expect(page.locator("#review-stage")).to_have_text("Second review · random sample")
    expect(page.locator("#kappa")).to_have_text("0.80")
    expect(page.locator("#pair-agreement")).to_contain_text("90 % of 20 doubly reviewed")
    page.locator("#review-stats").scroll_into_view_if_needed()
    shot(page, f"label-review-stats-{width}")
    assert LabelReview.objects.filter(reading=uncertain).count() == 2
    assert Reading.objects.get(pk=uncertain.pk).reviewed_label == "happy"
    assert page.evaluate("window.__csp") == [] and errors == []
    context.close()
