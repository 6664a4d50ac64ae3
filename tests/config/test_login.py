"""The login pages are throttled per client address and username, at THROTTLE_AUTH."""

import pytest
from django.core.cache import cache

from tests.factories import UserFactory

ADDR = "203.0.113.9"


@pytest.fixture
def auth_rate_3_per_min(monkeypatch):
    """The auth rate at 3/min on a fresh history (THROTTLE_RATES is read once, at import)."""
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, "auth": "3/min"}
    )
    import hashlib

    names = ["mia", *(f"pupil{i}" for i in range(6))]
    keys = [f"throttle_login_{ADDR}_{hashlib.sha256(n.encode()).hexdigest()[:20]}" for n in names]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


def _post(client, path, username, password, xff="198.51.100.1"):
    return client.post(
        path,
        {"username": username, "password": password, "next": "/teach/"},
        REMOTE_ADDR=ADDR,
        HTTP_X_FORWARDED_FOR=xff,
    )


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_a_fourth_attempt_on_one_account_within_the_minute_is_refused_even_with_the_right_password(
    client, auth_rate_3_per_min, path
):
    UserFactory(username="mia", password="right-pass-123", is_staff=True)
    # a different X-Forwarded-For each time does not reset it (NUM_PROXIES=0)
    codes = [
        _post(client, path, "mia", "wrong", xff=f"198.51.100.{i}").status_code for i in range(3)
    ]
    assert codes == [200, 200, 200]  # the form again, with the error
    r = _post(client, path, "MIA ", "right-pass-123")  # case and spaces do not reset it
    assert r.status_code == 429
    assert int(r["Retry-After"]) >= 1
    page = r.content.decode()
    assert "Too many login attempts" in page
    assert f'action="{path}"' in page  # the admin's retry goes back to the admin
    assert "_auth_user_id" not in client.session  # not logged in
    assert client.get(path, REMOTE_ADDR=ADDR).status_code == 200  # showing the form is free


@pytest.mark.django_db
def test_a_classroom_behind_one_address_is_not_locked_out(client, auth_rate_3_per_min):
    """Thirty learners behind one school NAT address each log in once."""
    for i in range(6):
        UserFactory(username=f"pupil{i}", password="right-pass-123")
    for i in range(6):
        c = type(client)()
        r = _post(c, "/accounts/login/", f"pupil{i}", "right-pass-123")
        assert r.status_code == 302, i
        assert c.session["_auth_user_id"]
