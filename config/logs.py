"""Logging filters.

A 403 is an expected answer (a learner opening an instructor's page, a form posted without
its CSRF token), yet Django logged each PermissionDenied with its whole traceback at WARNING.
:class:`ForbiddenOneLine` turns every 403 that Django's request and CSRF loggers write into
one line with the path, the user and the reason, without the traceback."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied


def _user(request) -> str:
    user = getattr(request, "user", None)  # absent where the middleware did not run
    if user is None or not user.is_authenticated:
        return "anonymous"
    return f"id={user.pk}"  # no username: the logs should not name learners


class ForbiddenOneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # once per record: logging set up again (a second django.setup()) adds the filter again
        if getattr(record, "status_code", None) != 403 or getattr(record, "one_line", False):
            return True
        from config.api import clip  # not at import: logging is set up before the apps load

        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and not isinstance(exc, PermissionDenied):
            return True  # not an expected refusal: keep what Django logged
        request = getattr(record, "request", None)
        if exc is not None:
            reason = str(exc) or "permission denied"
        elif record.name == "django.security.csrf":
            reason = f"CSRF: {record.args[0]}" if record.args else "CSRF"
        else:
            reason = "refused by the view"
        path = getattr(request, "path", "") or "?"
        record.msg = "Forbidden %s user=%s reason=%s"
        record.args = (clip(path), _user(request), clip(reason))
        record.exc_info, record.exc_text, record.one_line = None, None, True
        return True
