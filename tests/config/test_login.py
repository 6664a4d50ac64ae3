"""The login pages share the token endpoint's ``auth`` budget per client address."""

import pytest
from django.core.cache import cache

from tests.factories import UserFactory

ADDR = "203.0.113.9"


@pytest.fixture
def auth_rate_3_per_min(monkeypatch):
    """The auth scope at 3/min on a fresh history (THROTTLE_RATES is read once, at import)."""
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, "auth": "3/min"}
    )
    cache.delete_many([f"throttle_auth_{ADDR}", f"throttle_anon_{ADDR}"])
    yield
    cache.delete_many([f"throttle_auth_{ADDR}", f"throttle_anon_{ADDR}"])


def _post(client, path, password, xff="198.51.100.1"):
    return client.post(
        path,
        {"username": "mia", "password": password},
        REMOTE_ADDR=ADDR,
        HTTP_X_FORWARDED_FOR=xff,
    )


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_login_form_refuses_a_fourth_attempt_within_the_minute_even_with_the_right_password(
    client, auth_rate_3_per_min, path
):
    UserFactory(username="mia", password="right-pass-123", is_staff=True)
    codes = [_post(client, path, "wrong", xff=f"198.51.100.{i}").status_code for i in range(3)]
    assert codes == [200, 200, 200]  # the form again, with the error
    r = _post(client, path, "right-pass-123")
    assert r.status_code == 429
    assert int(r["Retry-After"]) >= 1
    assert "Too many login attempts" in r.content.decode()
    assert "_auth_user_id" not in client.session  # not logged in
    assert client.get(path, REMOTE_ADDR=ADDR).status_code == 200  # showing the form is free


@pytest.mark.django_db
def test_form_and_token_endpoint_share_one_budget(client, auth_rate_3_per_min):
    from rest_framework.test import APIClient

    UserFactory(username="mia", password="right-pass-123")
    api = APIClient(REMOTE_ADDR=ADDR)
    codes = [
        api.post("/api/auth/token/", {"username": "mia", "password": "x"}).status_code
        for _ in range(2)
    ]
    assert codes == [400, 400]
    assert _post(client, "/accounts/login/", "wrong").status_code == 200
    assert _post(client, "/accounts/login/", "right-pass-123").status_code == 429
    r = api.post("/api/auth/token/", {"username": "mia", "password": "right-pass-123"})
    assert r.status_code == 429


@pytest.mark.django_db
def test_login_within_the_budget_works(client, auth_rate_3_per_min):
    UserFactory(username="mia", password="right-pass-123")
    r = _post(client, "/accounts/login/", "right-pass-123")
    assert r.status_code == 302
    assert client.session["_auth_user_id"]
