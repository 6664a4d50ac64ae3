"""The OpenAPI schema and the Swagger UI are for signed-in users and API tokens only."""

import re

import pytest
from rest_framework.test import APIClient

from tests.factories import InstructorFactory, UserFactory, api_token


@pytest.mark.django_db
def test_the_schema_needs_a_login_or_a_token():
    anonymous = APIClient().get("/api/schema/?format=json")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "not_authenticated"
    assert "paths" not in anonymous.json()

    token = api_token(UserFactory())
    r = APIClient().get("/api/schema/?format=json", HTTP_AUTHORIZATION=f"Token {token}")
    assert r.status_code == 200
    assert r.json()["openapi"].startswith("3.") and "/api/me/data/" in r.json()["paths"]


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/docs/", "/api/docs/?script="])
def test_the_swagger_ui_sends_anonymous_visitors_to_the_login_page(client, url):
    r = client.get(url)
    assert r.status_code == 302
    assert r["Location"].startswith("/accounts/login/?next=/api/docs/")


@pytest.mark.django_db
def test_the_swagger_ui_works_signed_in_without_inline_script(client):
    client.force_login(InstructorFactory())
    r = client.get("/api/docs/")
    assert r.status_code == 200
    html = r.content.decode()
    assert 'id="swagger-ui"' in html and "cdn" not in html.lower()
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all(" src=" in tag for tag in scripts), scripts
    init = re.search(r'<script src="(/api/docs/\?[^"]*script=[^"]*)"', html).group(1)
    js = client.get(init.replace("&amp;", "&"))
    assert js.status_code == 200
    assert js["Content-Type"].startswith("application/javascript")
    body = js.content.decode()
    assert "SwaggerUIBundle" in body and "/api/schema/" in body
    # the UI then fetches the schema with the same session
    assert client.get("/api/schema/?format=json").status_code == 200
