"""Throttled logins for the pages (``/accounts/login/`` and the admin's ``/admin/login/``).

DRF throttles only DRF views (the token endpoint has its own ``auth`` scope, per address), so
the login forms count their POSTs here, at the same ``THROTTLE_AUTH`` rate, per client address
*and* username: guessing one account's password is slowed down, while a classroom behind one
school NAT address, where every learner logs in at the start of a lesson, is not locked out
(``NUM_PROXIES`` decides which address counts).
"""

from __future__ import annotations

import hashlib

from django.contrib import admin
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.template.response import TemplateResponse
from rest_framework.throttling import ScopedRateThrottle


class _AuthScope:
    """What ScopedRateThrottle reads off a view: the ``auth`` rate."""

    throttle_scope = "auth"


class LoginAttemptThrottle(ScopedRateThrottle):
    def get_cache_key(self, request, view):
        username = (request.POST.get("username") or "").strip().lower()
        who = hashlib.sha256(username.encode()).hexdigest()[:20]  # any characters, fixed length
        return f"throttle_login_{self.get_ident(request)}_{who}"


def login_wait_seconds(request) -> int | None:
    """Count a login POST: None while within the budget, else the seconds to wait. GETs
    (showing the form) are free."""
    if request.method != "POST":
        return None
    throttle = LoginAttemptThrottle()
    if throttle.allow_request(request, _AuthScope()):
        return None
    return max(1, round(throttle.wait() or 60))


def too_many_attempts(request, wait: int) -> TemplateResponse:
    """429 with the login form (unbound: the password is not checked) and when to retry."""
    response = TemplateResponse(
        request,
        "registration/login.html",
        {
            "form": AuthenticationForm(request),
            "throttled": True,
            "retry_after": wait,
            "login_action": request.path,  # the admin's form posts back to the admin
            "next": request.POST.get("next", ""),
        },
        status=429,
    )
    response["Retry-After"] = str(wait)
    return response


class ThrottledLoginView(LoginView):
    def post(self, request, *args, **kwargs):
        wait = login_wait_seconds(request)
        if wait is not None:
            return too_many_attempts(request, wait)
        return super().post(request, *args, **kwargs)


def admin_login(request, extra_context=None):
    wait = login_wait_seconds(request)
    if wait is not None:
        return too_many_attempts(request, wait)
    return admin.site.login(request, extra_context)
