"""API token authentication: django-rest-knox's, with the header's bytes checked first.

knox decodes the key as UTF-8 and lets the error escape, so a header such as ``Token \\xe9``
was a 500; here it is the same 401 as any other bad token.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox import auth
from rest_framework import exceptions


class TokenAuthentication(auth.TokenAuthentication):
    def authenticate_credentials(self, token: bytes):
        try:
            token.decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        return super().authenticate_credentials(token)


class TokenScheme(KnoxTokenScheme):
    """The OpenAPI security scheme of :class:`TokenAuthentication` (``Token <key>``)."""

    target_class = "config.auth.TokenAuthentication"
    name = "tokenAuth"
