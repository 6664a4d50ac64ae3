from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

import config.converters  # noqa: F401  (registers <id:...>)
from config.health import healthz
from config.login import ThrottledLoginView, admin_login

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # before the routes they shadow: the same views, with login attempts throttled
    path("admin/login/", admin_login),
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # signed in only (SERVE_PERMISSIONS); the page's own script is served at ?script, not
    # inline, so the Content-Security-Policy needs no 'unsafe-inline' for it
    path(
        "api/docs/",
        login_required(SpectacularSwaggerSplitView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path("api/", include("tutoring.urls")),
    path("api/", include("emotion.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("tutoring.page_urls")),
]

# Errors raised outside a DRF view (no URL matches, an unhandled exception, a bad Host header)
# answer in the API's JSON error shape under /api/, and with Django's pages elsewhere.
handler400 = "config.api.bad_request"
handler403 = "config.api.permission_denied"
handler404 = "config.api.page_not_found"
handler500 = "config.api.server_error"
