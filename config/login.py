"""Throttled logins for the pages: the same ``auth`` budget as the API's token endpoint.

DRF throttles only DRF views, so the login form (``/accounts/login/``) and the admin's
(``/admin/login/``) count their POSTs here, against the very cache entries the token endpoint
uses (``ScopedRateThrottle``, scope ``auth``, ``THROTTLE_AUTH``): one budget per client address
(``NUM_PROXIES`` decides which address), whichever door a password guesser knocks on.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.template.response import TemplateResponse
from rest_framework.throttling import ScopedRateThrottle


class _AuthScope:
    """What ScopedRateThrottle reads off a view."""

    throttle_scope = "auth"


def login_wait_seconds(request) -> int | None:
    """Count a login POST against the ``auth`` budget: None while within it, else the seconds
    to wait. GETs (showing the form) are free."""
    if request.method != "POST":
        return None
    throttle = ScopedRateThrottle()
    if throttle.allow_request(request, _AuthScope()):
        return None
    return max(1, round(throttle.wait() or 60))


def too_many_attempts(request, wait: int) -> TemplateResponse:
    """429 with the login form (unbound: the password is not checked) and when to retry."""
    response = TemplateResponse(
        request,
        "registration/login.html",
        {"form": AuthenticationForm(request), "throttled": True, "retry_after": wait, "next": ""},
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
