import base64
import functools
import hashlib
import re

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.template.loader import get_template
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.settings import api_settings

import config.converters  # noqa: F401  (registers <id:...>)
from config.health import healthz
from config.login import ThrottledLoginView, admin_login
from config.password_reset import PasswordResetView


@functools.cache
def _swagger_inline_style_hashes() -> tuple[str, ...]:
    """CSP hashes of the inline <style> blocks of drf-spectacular's Swagger UI page (plain CSS
    in its template, so the page carries them byte for byte)."""
    source = get_template("drf_spectacular/swagger_ui.html").template.source
    blocks = re.findall(r"<style[^>]*>(.*?)</style>", source, re.S)
    digests = (base64.b64encode(hashlib.sha256(css.encode()).digest()).decode() for css in blocks)
    return tuple(f"'sha256-{d}'" for d in digests)


def _signed_in_or_token(request) -> bool:
    """Whether the API's own authentication (DRF's DEFAULT_AUTHENTICATION_CLASSES: an API
    token or the session) knows the caller; a token it refuses counts as no one."""
    authenticators = [cls() for cls in api_settings.DEFAULT_AUTHENTICATION_CLASSES]
    try:
        return Request(request, authenticators=authenticators).user.is_authenticated
    except exceptions.APIException:
        return False


def _api_docs():
    view = SpectacularSwaggerSplitView.as_view(url_name="api-schema")

    @functools.wraps(view)
    def docs(request, *args, **kwargs):
        # the page is for people: anyone the API does not know goes to the login page (the
        # view itself would answer a bare 401 in HTML)
        if not _signed_in_or_token(request):
            return redirect_to_login(request.get_full_path())
        response = view(request, *args, **kwargs)
        response.csp_extra = {"style-src": list(_swagger_inline_style_hashes())}
        return response

    return docs


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # before the routes they shadow: the same views, with login attempts throttled
    path("admin/login/", admin_login),
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/password_reset/", PasswordResetView.as_view(), name="password_reset"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # signed in or an API token (SERVE_PERMISSIONS), else the login page; the page's own
    # script is served at ?script, not inline, and its inline style is allowed by hash: no
    # 'unsafe-inline' in the policy
    path("api/docs/", _api_docs(), name="api-docs"),
    path("api/", include("tutoring.urls")),
    path("api/", include("emotion.urls")),
    path("api/", include("records.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("emotion.page_urls")),
    path("", include("tutoring.page_urls")),
    path("", include("records.page_urls")),
]

# Errors raised outside a DRF view (no URL matches, an unhandled exception, a bad Host header)
# answer in the API's JSON error shape under /api/, and with Django's pages elsewhere.
handler400 = "config.api.bad_request"
handler403 = "config.api.permission_denied"
handler404 = "config.api.page_not_found"
handler500 = "config.api.server_error"
