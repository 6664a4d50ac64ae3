"""Password reset (``/accounts/password_reset/``): by email where the server can send it,
otherwise by a person.

A school's accounts are made by its staff, and many learners have no mailbox of their own:
without ``EMAIL_URL`` the page says to ask a teacher or an administrator (the admin's user
page sets a new password) and nothing is sent, instead of Django trying an SMTP server on
localhost and logging an ERROR for every request. With ``EMAIL_URL`` Django's reset email is
sent as usual.

Either way POSTs are counted like logins (``config.login``): per target mailbox, whoever asks,
at ``THROTTLE_PASSWORD_RESET`` (nobody's inbox can be flooded with reset links), and per
client address for all targets together at ``ADDRESS_FACTOR`` times that.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.template.response import TemplateResponse
from rest_framework.throttling import SimpleRateThrottle

from config.login import ADDRESS_FACTOR, account_key, throttled_wait


class _ResetScope:
    throttle_scope = "password_reset"


class ResetTargetThrottle(SimpleRateThrottle):
    """Per target mailbox, every client address together."""

    scope = "password_reset"

    def get_cache_key(self, request, view):
        return f"throttle_reset_{account_key(request.POST.get('email') or '')}"


class ResetAddressThrottle(SimpleRateThrottle):
    """Per client address, every target together, at ``ADDRESS_FACTOR`` times the rate."""

    scope = "password_reset"

    def __init__(self):
        super().__init__()
        if self.num_requests is not None:
            self.num_requests *= ADDRESS_FACTOR

    def get_cache_key(self, request, view):
        return f"throttle_reset_addr_{self.get_ident(request)}"


def by_email() -> bool:
    return settings.PASSWORD_RESET_BY_EMAIL


class PasswordResetView(auth_views.PasswordResetView):
    template_name = "registration/password_reset_form.html"

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "by_email": by_email()}

    def post(self, request, *args, **kwargs):
        wait = throttled_wait(
            request, [ResetTargetThrottle(), ResetAddressThrottle()], _ResetScope()
        )
        if wait is not None:
            context = {**self.get_context_data(), "throttled": True, "retry_after": wait}
            response = TemplateResponse(request, self.template_name, context, status=429)
            response["Retry-After"] = str(wait)
            return response
        if not by_email():  # nothing to send with: the page says whom to ask
            return self.get(request, *args, **kwargs)
        return super().post(request, *args, **kwargs)
