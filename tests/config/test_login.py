"""The login pages are throttled per client address and account, at THROTTLE_AUTH, and per
client address for all usernames together, at ten times that."""

import secrets

import pytest

from tests.factories import UserFactory


@pytest.fixture
def auth_rate_3_per_min(monkeypatch):
    """The auth rate at 3/min (THROTTLE_RATES is read once, at import)."""
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, "auth": "3/min"}
    )


@pytest.fixture
def addr():
    """A client address of this test's own: a fresh throttle history (the cache, Redis under
    scripts/test.sh, outlives tests and runs)."""
    return f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"


def _post(client, path, addr, username, password, xff="198.51.100.1"):
    return client.post(
        path,
        {"username": username, "password": password, "next": "/teach/"},
        REMOTE_ADDR=addr,
        HTTP_X_FORWARDED_FOR=xff,
    )


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_a_fourth_attempt_on_one_account_within_the_minute_is_refused_even_with_the_right_password(
    client, auth_rate_3_per_min, addr, path
):
    UserFactory(username="mia", password="right-pass-123", is_staff=True)
    # a different X-Forwarded-For each time does not reset it (NUM_PROXIES=0)
    codes = [
        _post(client, path, addr, "mia", "wrong", xff=f"198.51.100.{i}").status_code
        for i in range(3)
    ]
    assert codes == [200, 200, 200]  # the form again, with the error
    r = _post(client, path, addr, "MIA ", "right-pass-123")  # case and spaces do not reset it
    assert r.status_code == 429
    assert int(r["Retry-After"]) >= 1
    page = r.content.decode()
    assert "Too many login attempts" in page
    assert f'action="{path}"' in page  # the admin's retry goes back to the admin
    assert "_auth_user_id" not in client.session  # not logged in
    assert client.get(path, REMOTE_ADDR=addr).status_code == 200  # showing the form is free


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
@pytest.mark.parametrize(
    "spelling",
    [
        "\uff4dia",  # full-width m: NFKC makes it "mia", and the form logs into mia with it
        "\uff2d\uff29\uff21",  # full-width MIA
        "\u3000mia",  # an ideographic space in front: stripped
    ],
)
def test_another_unicode_spelling_of_the_account_does_not_get_a_fresh_budget(
    client, auth_rate_3_per_min, addr, path, spelling
):
    UserFactory(username="mia", password="right-pass-123", is_staff=True)
    codes = [_post(client, path, addr, "mia", "wrong").status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    r = _post(client, path, addr, spelling, "right-pass-123")
    assert r.status_code == 429
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_the_full_width_spelling_does_log_into_the_account(client, addr):
    """Why the spellings above must share a bucket: Django's form NFKC-normalises the username
    before authenticate, so they reach the same account."""
    user = UserFactory(username="mia", password="right-pass-123")
    r = _post(client, "/accounts/login/", addr, "\uff4dia", "right-pass-123")
    assert r.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


@pytest.mark.django_db
def test_a_classroom_behind_one_address_is_not_locked_out(auth_rate_3_per_min, addr):
    """Learners behind one school NAT address each log in once."""
    from django.test import Client

    for i in range(6):
        UserFactory(username=f"pupil{i}", password="right-pass-123")
    for i in range(6):
        c = Client()
        r = _post(c, "/accounts/login/", addr, f"pupil{i}", "right-pass-123")
        assert r.status_code == 302, i
        assert c.session["_auth_user_id"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_one_address_trying_many_usernames_is_capped_at_ten_times_the_rate(
    client, auth_rate_3_per_min, addr, path
):
    UserFactory(username="mia", password="right-pass-123", is_staff=True)
    # 30 = 10 × 3/min: one wrong password each on 30 names, none over its own budget
    codes = {_post(client, path, addr, f"guess{i}", "wrong").status_code for i in range(30)}
    assert codes == {200}
    r = _post(client, path, addr, "mia", "right-pass-123")  # an untouched account
    assert r.status_code == 429
    assert int(r["Retry-After"]) >= 1
    assert "_auth_user_id" not in client.session
    # another address is not affected
    other = _post(client, path, f"{addr}:1", "mia", "right-pass-123")
    assert other.status_code == 302


@pytest.mark.django_db
def test_the_address_cap_counts_the_address_num_proxies_picks(
    client, auth_rate_3_per_min, addr, settings
):
    """Behind one proxy (NUM_PROXIES=1) the cap counts the address the proxy appended, the
    same rule as every other throttle: writing something else in front does not reset it."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxy = "203.0.113.250"
    for i in range(30):
        r = _post(client, "/accounts/login/", proxy, f"guess{i}", "wrong", xff=f"x{i}, {addr}")
        assert r.status_code == 200, i
    assert _post(client, "/accounts/login/", proxy, "g", "w", xff=f"y, {addr}").status_code == 429
    # another client behind the same proxy has its own budget
    assert _post(client, "/accounts/login/", proxy, "g", "w", xff=f"{addr}:1").status_code == 200
