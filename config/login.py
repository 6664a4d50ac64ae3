"""Throttled logins for the pages (``/accounts/login/`` and the admin's ``/admin/login/``).

DRF throttles only DRF views (the token endpoint has its own ``auth`` scope, per address), so
the login forms count their POSTs here, at the same ``THROTTLE_AUTH`` rate, per client address
*and* account: guessing one account's password is slowed down, while a classroom behind one
school NAT address, where every learner logs in at the start of a lesson, is not locked out
(``NUM_PROXIES`` decides which address counts, as for every DRF throttle). On top of that one
address gets ``ADDRESS_FACTOR`` times that rate for all usernames together, so trying one
password on many accounts (or many spellings of one) is slowed down too.

The account is the username as the form hands it to ``authenticate``: Django's
``UsernameField`` strips it and NFKC-normalises it, so ``mia``, ``ｍia`` (full-width) and
``mia `` reach the same account and must count in the same bucket; case is folded as well
(``MIA`` is one more way to aim at ``mia`` for a guesser, never a reason for a fresh budget).
"""

from __future__ import annotations

import hashlib
import unicodedata

from django.contrib import admin
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.template.response import TemplateResponse
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle

ADDRESS_FACTOR = 10  # one address, all usernames: this many times the per-account rate
# Longer (stripped) usernames fail the form's max_length before authenticate is called, and
# are not normalised by Django (normalisation can be slow on huge input): all of them can
# share whatever key their first characters give.
_MAX_USERNAME_CHARS = 256


def account_key(username: str) -> str:
    """The account a login POST aims at, as a fixed-length key: stripped, NFKC-normalised
    (as ``UsernameField`` does before ``authenticate``) and case-folded."""
    name = username.strip()[:_MAX_USERNAME_CHARS]
    name = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold()).strip()
    return hashlib.sha256(name.encode()).hexdigest()[:20]  # any characters, fixed length


class _AuthScope:
    """What ScopedRateThrottle reads off a view: the ``auth`` rate."""

    throttle_scope = "auth"


class LoginAttemptThrottle(ScopedRateThrottle):
    """Per client address and account, at ``THROTTLE_AUTH``."""

    def get_cache_key(self, request, view):
        who = account_key(request.POST.get("username") or "")
        return f"throttle_login_{self.get_ident(request)}_{who}"


class LoginAddressThrottle(SimpleRateThrottle):
    """Per client address, every username together, at ``ADDRESS_FACTOR`` × ``THROTTLE_AUTH``."""

    scope = "auth"

    def __init__(self):
        super().__init__()
        if self.num_requests is not None:
            self.num_requests *= ADDRESS_FACTOR

    def get_cache_key(self, request, view):
        return f"throttle_login_addr_{self.get_ident(request)}"


def login_wait_seconds(request) -> int | None:
    """Count a login POST: None while within both budgets, else the seconds to wait. GETs
    (showing the form) are free."""
    if request.method != "POST":
        return None
    return throttled_wait(request, [LoginAttemptThrottle(), LoginAddressThrottle()], _AuthScope())


def throttled_wait(request, throttles, view) -> int | None:
    """Count a request against every throttle: None while all allow it, else the seconds to
    wait. All are asked (each records the attempt it allows), so an attempt refused by one
    still counts against the others."""
    refused = [t for t in throttles if not t.allow_request(request, view)]
    if not refused:
        return None
    return max(max(1, round(t.wait() or 60)) for t in refused)


def too_many_attempts(request, wait: int) -> TemplateResponse:
    """429 with the login form (unbound: the password is not checked) and when to retry."""
    response = TemplateResponse(
        request,
        "registration/login.html",
        {
            # unbound (the password is not checked), the username kept for the next try
            "form": AuthenticationForm(
                request, initial={"username": request.POST.get("username", "")[:150]}
            ),
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
