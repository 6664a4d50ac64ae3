"""Errors raised outside DRF views answer in the API's JSON error shape under /api/ (handler400,
handler403, handler404, handler500 in config.urls), and with Django's HTML pages elsewhere."""

import json

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.test import RequestFactory
from rest_framework.test import APIClient

from config import api
from tests.factories import InstructorFactory


def assert_json_error(r, status, code):
    assert r.status_code == status and r["Content-Type"] == "application/json"
    err = json.loads(r.content)["error"]
    assert (err["status"], err["code"], err["details"]) == (status, code, None)
    assert set(err) == {"status", "code", "message", "details"} and err["message"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/sessions/abc/", "/api/no-such-endpoint/", "/api"])
def test_an_api_path_no_url_matches_is_a_json_404(path):
    assert_json_error(APIClient().get(path), 404, "not_found")


@pytest.mark.django_db
def test_a_page_no_url_matches_is_still_the_html_404():
    r = APIClient().get("/no-such-page/")
    assert r.status_code == 404 and r["Content-Type"].startswith("text/html")
    assert "<html" in r.content.decode().lower()


@pytest.mark.django_db
def test_an_unhandled_exception_under_api_is_a_json_500(monkeypatch):
    def boom(**kwargs):
        raise RuntimeError("secret detail")

    monkeypatch.setattr("tutoring.selectors.course_list_for_output", boom)
    c = APIClient(raise_request_exception=False)
    c.force_authenticate(InstructorFactory())
    r = c.get("/api/courses/")
    assert_json_error(r, 500, "server_error")
    assert "secret detail" not in r.content.decode()


def test_errors_outside_api_keep_the_html_pages(db):
    rf = RequestFactory()
    r = api.server_error(rf.get("/teach/"))
    assert r.status_code == 500 and r["Content-Type"].startswith("text/html")
    r = api.permission_denied(rf.get("/teach/"), PermissionDenied())
    assert r.status_code == 403 and r["Content-Type"].startswith("text/html")
    r = api.bad_request(rf.get("/teach/"), None)
    assert r.status_code == 400 and r["Content-Type"].startswith("text/html")
    assert_json_error(
        api.permission_denied(rf.get("/api/x/"), PermissionDenied()), 403, "permission_denied"
    )


@pytest.mark.django_db
def test_a_disallowed_host_under_api_is_a_json_400():
    r = APIClient().get("/api/courses/", HTTP_HOST="evil.example")
    assert_json_error(r, 400, "bad_request")


def test_the_handlers_pass_djangos_checks():
    call_command("check", "--tag", "urls")
