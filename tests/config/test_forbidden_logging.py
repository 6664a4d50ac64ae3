"""An expected 403 (PermissionDenied, a CSRF failure) is logged as one line with the path, the
user and the reason; Django logged each PermissionDenied with its whole traceback."""

import logging

import pytest
from django.test import Client

from config.logs import ForbiddenOneLine
from tests.factories import CourseFactory, InstructorFactory, UserFactory, enroll


def forbidden_records(caplog):
    return [r for r in caplog.records if getattr(r, "status_code", None) == 403]


def assert_one_line(record, path, user, reason):
    text = logging.Formatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "\n" not in text and "Traceback" not in text, text
    assert path in text and f"user=id={user.pk}" in text and reason in text, text


@pytest.mark.django_db
def test_a_csrf_failure_logs_one_line_with_the_user(caplog):
    learner = UserFactory()
    course = CourseFactory(instructors=[InstructorFactory()])
    enroll(course, learner)
    c = Client(enforce_csrf_checks=True)
    c.force_login(learner)
    path = f"/learn/courses/{course.pk}/revoke/"
    with caplog.at_level(logging.INFO):
        r = c.post(path)
    assert r.status_code == 403
    (record,) = forbidden_records(caplog)
    assert_one_line(record, path, learner, "CSRF")


@pytest.mark.django_db
def test_a_forbidden_page_logs_one_line_but_a_500_keeps_its_traceback(caplog, monkeypatch):
    learner = UserFactory()
    c = Client()
    c.force_login(learner)
    with caplog.at_level(logging.INFO):
        assert c.get("/teach/").status_code == 403
    (record,) = forbidden_records(caplog)
    assert_one_line(record, "/teach/", learner, "this page is not for your role")
    # logging set up twice (a second django.setup()) runs the filter twice on one record
    ForbiddenOneLine().filter(record)
    assert_one_line(record, "/teach/", learner, "this page is not for your role")

    def boom(**kwargs):
        raise RuntimeError("unexpected")

    monkeypatch.setattr("tutoring.selectors.course_list", boom)
    c = Client(raise_request_exception=False)
    c.force_login(InstructorFactory())
    with caplog.at_level(logging.INFO):
        assert c.get("/teach/").status_code == 500
    (record,) = [r for r in caplog.records if getattr(r, "status_code", None) == 500]
    assert record.exc_info is not None
