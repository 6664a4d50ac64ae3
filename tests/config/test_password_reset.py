"""Password reset: without an email server the page says whom to ask and sends nothing (it
tried SMTP on localhost and logged an ERROR per request); with one it emails the link; either
way POSTs are throttled per target mailbox and per client address."""

import logging
import secrets

import pytest
from django.core import mail

from tests.factories import UserFactory
from tests.servers import free_port

URL = "/accounts/password_reset/"


@pytest.fixture
def reset_rate_2_per_hour(monkeypatch):
    """THROTTLE_PASSWORD_RESET at 2/hour (THROTTLE_RATES is read once, at import)."""
    from rest_framework.throttling import SimpleRateThrottle

    rates = {**SimpleRateThrottle.THROTTLE_RATES, "password_reset": "2/hour"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)


def fresh_email() -> str:
    """A target of this test's own (the throttle's cache, Redis under scripts/test.sh,
    outlives tests and runs)."""
    return f"pupil-{secrets.token_hex(4)}@school.example"


def fresh_addr() -> str:
    return f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"


@pytest.mark.django_db
def test_without_an_email_server_the_page_says_whom_to_ask_and_sends_nothing(
    client, settings, caplog
):
    # what an unconfigured server used to try: SMTP on a port nothing listens on
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    user = UserFactory(email=fresh_email())
    page = client.get(URL)
    assert page.status_code == 200 and "ask your teacher" in page.content.decode()
    with caplog.at_level(logging.INFO):
        r = client.post(URL, {"email": user.email}, REMOTE_ADDR=fresh_addr())
    assert r.status_code == 200 and "ask your teacher" in r.content.decode()
    assert [rec for rec in caplog.records if rec.levelno >= logging.ERROR] == []
    assert mail.outbox == []


@pytest.mark.django_db
@pytest.mark.parametrize("by_email", [True, False])
def test_one_target_is_throttled_whoever_asks(client, settings, reset_rate_2_per_hour, by_email):
    settings.PASSWORD_RESET_BY_EMAIL = by_email
    email = fresh_email()
    UserFactory(email=email)
    codes = [client.post(URL, {"email": email}, REMOTE_ADDR=fresh_addr()).status_code]
    codes.append(client.post(URL, {"email": email.upper()}, REMOTE_ADDR=fresh_addr()).status_code)
    r = client.post(URL, {"email": f" {email} "}, REMOTE_ADDR=fresh_addr())
    assert codes == ([302, 302] if by_email else [200, 200])
    assert r.status_code == 429 and int(r["Retry-After"]) > 0
    assert "Too many password reset requests" in r.content.decode()
    assert len(mail.outbox) == (2 if by_email else 0)  # with an email server, links are sent
    assert all(m.to == [email] and "/accounts/reset/" in m.body for m in mail.outbox)


@pytest.mark.django_db
def test_one_client_address_is_throttled_for_all_targets(client, settings, reset_rate_2_per_hour):
    settings.PASSWORD_RESET_BY_EMAIL = True
    addr = fresh_addr()
    codes = [
        client.post(URL, {"email": fresh_email()}, REMOTE_ADDR=addr).status_code for _ in range(21)
    ]
    assert codes == [302] * 20 + [429]  # 10 × the per-target rate
