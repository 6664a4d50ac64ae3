"""Content-Security-Policy (CONTENT_SECURITY_POLICY=on): on every response, and no page of
ours, of the admin or of the Swagger UI breaks under it (real Chromium)."""

import base64
import hashlib
import json
import re
import subprocess
import sys
import time
import urllib.request

import pytest

from config.csp import csp_with
from config.settings import DEFAULT_CONTENT_SECURITY_POLICY as POLICY
from tests.conftest import ROOT
from tests.factories import InstructorFactory
from tests.servers import serve


@pytest.fixture
def csp_on(settings):
    settings.CONTENT_SECURITY_POLICY = POLICY


def test_the_policy_is_on_unless_turned_off():
    def value(env):
        base = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "SECRET_KEY": "x"}
        code = "from django.conf import settings; import json; print(json.dumps(settings.CONTENT_SECURITY_POLICY))"
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**base, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    assert value({}) == POLICY
    assert value({"CONTENT_SECURITY_POLICY": "on"}) == POLICY
    assert value({"CONTENT_SECURITY_POLICY": "off"}) == ""
    assert value({"CONTENT_SECURITY_POLICY": "default-src 'none'"}) == "default-src 'none'"


def test_the_default_policy_allows_only_this_origin():
    directives = dict(d.split(" ", 1) for d in POLICY.split("; "))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval'
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert "unsafe" not in POLICY


def test_csp_with_adds_sources():
    assert csp_with("default-src 'self'; style-src 'self'", {"style-src": ["'sha256-x'"]}) == (
        "default-src 'self'; style-src 'self' 'sha256-x'"
    )
    # a directive the policy lacks starts from default-src, which it replaces
    assert csp_with("default-src 'self' data:", {"style-src": ["'sha256-x'"]}) == (
        "default-src 'self' data:; style-src 'self' data: 'sha256-x'"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/", "/api/courses/", "/nowhere"])
def test_every_response_carries_the_policy(client, csp_on, url):
    r = client.get(url)
    assert r["Content-Security-Policy"] == POLICY
    assert r.status_code in (200, 401, 404)


@pytest.mark.django_db
def test_with_debug_on_the_policy_is_only_reported(client, csp_on, settings):
    settings.DEBUG = True
    r = client.get("/accounts/login/")
    assert r["Content-Security-Policy-Report-Only"] == POLICY
    assert "Content-Security-Policy" not in r


@pytest.mark.django_db
def test_an_empty_policy_sends_no_header(client, settings):
    settings.CONTENT_SECURITY_POLICY = ""
    assert "Content-Security-Policy" not in client.get("/accounts/login/")


@pytest.mark.django_db
def test_the_swagger_ui_allows_exactly_its_inline_style_by_hash(client, csp_on):
    client.force_login(InstructorFactory())
    r = client.get("/api/docs/")
    html = r.content.decode()
    styles = re.findall(r"<style[^>]*>(.*?)</style>", html, re.S)
    assert styles  # drf-spectacular's page has one
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in styles
    ]
    policy = dict(d.split(" ", 1) for d in r["Content-Security-Policy"].split("; "))
    assert policy["style-src"] == " ".join(["'self'", *hashes])
    assert policy["script-src"] == "'self'"


def test_our_templates_have_no_inline_script_style_or_handler():
    from tests.conftest import ROOT

    for path in sorted((ROOT / "templates").rglob("*.html")):
        html = path.read_text()
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert " src=" in tag, (path, tag)
        assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=|javascript:", html, re.I), path


# --- in Chromium ----------------------------------------------------------------------------

from tests.browser.conftest import (  # noqa: E402  (the browser tests' helpers)
    BASE_ARGS,
    CHROMIUM,
    login,
    playwright_instance,  # noqa: F401  (a fixture)
)

COLLECT = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
"""


@pytest.fixture(scope="module")
def csp_server(django_db_setup, tmp_path_factory):
    """The server as tests/browser runs it (embedded wiring, the test database), with
    CONTENT_SECURITY_POLICY=on."""
    with serve(tmp_path_factory.mktemp("csp-server"), CONTENT_SECURITY_POLICY="on") as url:
        r = urllib.request.urlopen(f"{url}/accounts/login/", timeout=10)
        assert r.headers["Content-Security-Policy"] == POLICY
        yield url


@pytest.fixture(scope="module")
def chromium(playwright_instance):  # noqa: F811
    """Chromium with a fake camera (its own test pattern) the pages may use unasked."""
    b = playwright_instance.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=BASE_ARGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"],
    )
    yield b
    b.close()


class Violations:
    """A signed-in browser context that records every CSP violation (events and console).
    Waits use selectors and expect, never wait_for_function: Playwright evals its predicate
    in the page, which the policy refuses."""

    def __init__(self, browser, server, username):
        self.context = browser.new_context()
        self.context.add_init_script(COLLECT)
        self.page = self.context.new_page()
        self.console = []
        self.page.on("console", self._console)
        self.server = server
        self.seen = []
        login(self.page, server, username, "pw-123456")

    def _console(self, message):
        if "Content Security Policy" in message.text:
            self.console.append(message.text)

    def visit(self, path, ready=None):
        self.collect()
        self.page.goto(self.server + path)
        self.page.wait_for_load_state("networkidle")
        if ready:
            self.page.wait_for_selector(ready, timeout=20_000)
        return self.page

    def collect(self):
        self.seen += self.page.evaluate("(window.__csp || []).splice(0)")
        return self.seen, self.console


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_no_page_breaks_under_the_policy(chromium, csp_server):
    from playwright.sync_api import expect

    from tests.factories import (
        ConsentFactory,
        CourseFactory,
        LearnerSessionFactory,
        UserFactory,
        enroll,
    )

    teacher = InstructorFactory(username="csp_teacher")
    learner = UserFactory(username="csp_learner", first_name="Lina")
    UserFactory(username="csp_admin", is_staff=True, is_superuser=True, role="admin")
    course = CourseFactory(title="Physics 101", instructors=[teacher])
    other = CourseFactory(title="Chemistry")
    enroll(course, learner, consent=False)
    enroll(other, learner, consent=False)
    consent = ConsentFactory(course=course, learner=learner)
    session = LearnerSessionFactory(learner=learner, course=course, consent=consent)
    seen = {}

    v = Violations(chromium, csp_server, "csp_learner")
    v.visit("/learn/")
    v.visit(f"/learn/courses/{other.pk}/")  # the consent form
    v.visit("/learn/data/erase/")
    page = v.visit(f"/learn/sessions/{session.pk}/")
    page.get_by_role("button", name="Start", exact=True).click()  # camera, canvas, WebSocket
    expect(page.locator("#status")).to_have_attribute("data-state", "sending", timeout=30_000)
    expect(page.locator("#sent")).not_to_have_text("0", timeout=30_000)
    page.get_by_role("button", name="Stop session").click()  # the end screen's summary
    expect(page.locator("#ended-summary")).to_contain_text("analysed", timeout=15_000)
    v.visit(f"/learn/courses/{course.pk}/")  # Start a session checks the camera first
    v.page.get_by_role("button", name="Start a session").click()
    v.page.wait_for_url("**/learn/sessions/**")
    seen["learner"] = v.collect()

    v = Violations(chromium, csp_server, "csp_teacher")
    v.visit("/teach/")
    v.visit(f"/teach/courses/{course.pk}/live/", ready='#conn[data-state="live"]')
    v.visit(f"/teach/courses/{course.pk}/reports/")
    v.visit(f"/teach/courses/{course.pk}/reports/?from=2026-02-02&to=2026-02-01")  # the message
    v.visit(f"/teach/courses/{course.pk}/sessions/")
    v.visit(f"/teach/courses/{course.pk}/sessions/?learner={learner.pk}")
    v.visit(f"/teach/sessions/{session.pk}/", ready="canvas")
    page = v.visit("/api/docs/", ready=".swagger-ui .opblock")  # the UI rendered the schema
    assert page.evaluate("getComputedStyle(document.body).margin") == "0px"  # its inline style
    seen["instructor"] = v.collect()

    v = Violations(chromium, csp_server, "csp_admin")
    v.visit("/admin/")
    page = v.visit("/admin/tutoring/user/")
    page.locator(f'input[name="_selected_action"][value="{learner.pk}"]').check()
    page.select_option('select[name="action"]', "erase_learner_data")
    page.locator('button[name="index"]').first.click()  # the confirmation page (cancel.js)
    page.wait_for_load_state("networkidle")
    assert "Erase learner data" in page.content()
    v.visit(f"/admin/tutoring/user/{learner.pk}/change/")
    v.visit(f"/admin/tutoring/course/{course.pk}/change/")  # filter_horizontal, inlines
    v.visit("/admin/tutoring/learnersession/")
    v.visit("/admin/emotion/reading/")
    seen["admin"] = v.collect()

    assert seen == {who: ([], []) for who in seen}
    # and the recorder does notice one: a picture from another origin
    v.page.evaluate(
        "document.body.append(Object.assign(document.createElement('img'),"
        " {src: 'http://example.invalid/x.png'}))"
    )
    expect(v.page.locator("img[src^='http://example.invalid']")).to_have_count(1)
    for _ in range(50):
        if v.collect()[0]:
            break
        time.sleep(0.1)
    assert v.seen and v.seen[0].startswith("img-src http://example.invalid/x.png"), v.seen
