"""/api/docs/ takes an API token as README says (it redirected a token to the login page),
through DRF's configured authentication, so it follows whatever token scheme the API uses."""

import pytest
from rest_framework.test import APIClient

from tests.factories import PASSWORD, InstructorFactory


def api_token(user) -> str:
    r = APIClient().post("/api/auth/token/", {"username": user.username, "password": PASSWORD})
    assert r.status_code in (200, 201), r.content
    return r.json()["token"]


@pytest.mark.django_db
def test_the_swagger_ui_and_its_script_take_an_api_token(client):
    auth = {"HTTP_AUTHORIZATION": f"Token {api_token(InstructorFactory())}"}
    page = client.get("/api/docs/", **auth)
    assert page.status_code == 200 and 'id="swagger-ui"' in page.content.decode()
    script = client.get("/api/docs/?script=", **auth)
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()
    schema = client.get("/api/schema/?format=json", **auth)
    assert schema.status_code == 200 and "/api/me/data/" in schema.json()["paths"]
    # a token the API refuses is no one: the login page, and 401 for the schema
    page = client.get("/api/docs/", HTTP_AUTHORIZATION="Token not-a-token")
    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/?next=")
    schema = client.get("/api/schema/?format=json", HTTP_AUTHORIZATION="Token not-a-token")
    assert schema.status_code == 401 and schema.json()["error"]["status"] == 401


@pytest.mark.django_db
def test_the_docs_follow_the_apis_authentication_classes(client, settings):
    token = api_token(InstructorFactory())
    assert client.get("/api/docs/", HTTP_AUTHORIZATION=f"Token {token}").status_code == 200
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    }
    page = client.get("/api/docs/", HTTP_AUTHORIZATION=f"Token {token}")
    assert page.status_code == 302
