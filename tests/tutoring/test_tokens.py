"""API tokens (issue 20, item 6): hashed at rest, expiring, revoked by sign-out and by any
password change, at most API_TOKEN_LIMIT_PER_USER per account; and a caller with no or a bad
token is throttled at the anonymous rate instead of being told 401 forever."""

import itertools
import json
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from tests.factories import PASSWORD, UserFactory

TOKEN_URL = "/api/auth/token/"


_addresses = (f"198.18.{i // 250}.{i % 250 + 1}" for i in itertools.count())


def obtain(user, client=None) -> dict:
    """A new token for ``user``, each from an address of its own: the token endpoint's ``auth``
    budget per address (in Redis, which outlives a test) is not what these tests are about."""
    client = client or APIClient(REMOTE_ADDR=next(_addresses))
    r = client.post(TOKEN_URL, {"username": user.username, "password": PASSWORD})
    assert r.status_code == 200, r.content
    return r.json()


def status_with(key: str, path: str = "/api/courses/") -> int:
    return APIClient(HTTP_AUTHORIZATION=f"Token {key}").get(path).status_code


@pytest.mark.django_db
def test_the_database_never_holds_the_key():
    key = obtain(UserFactory())["token"]
    assert status_with(key) == 200
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                assert not any(key in str(value) for value in row), table


@pytest.mark.django_db
def test_a_token_expires_after_the_ttl(settings, monkeypatch):
    body = obtain(UserFactory())
    ttl = timedelta(hours=settings.API_TOKEN_TTL_HOURS)
    issued = timezone.now()
    expiry = datetime.fromisoformat(body["expiry"])
    assert abs(expiry - (issued + ttl)) < timedelta(minutes=1)
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + ttl - timedelta(minutes=1))
    assert status_with(body["token"]) == 200  # used near its end, it is not renewed
    monkeypatch.setattr(timezone, "now", lambda: real_now() + ttl + timedelta(seconds=1))
    assert status_with(body["token"]) == 401


@pytest.mark.django_db
def test_api_logout_revokes_the_token_used_and_logout_all_every_one():
    user = UserFactory()
    first, second, third = (obtain(user)["token"] for _ in range(3))
    r = APIClient(HTTP_AUTHORIZATION=f"Token {first}").post("/api/auth/logout/")
    assert r.status_code == 204
    assert status_with(first) == 401 and status_with(second) == 200
    r = APIClient(HTTP_AUTHORIZATION=f"Token {second}").post("/api/auth/logout-all/")
    assert r.status_code == 204
    assert status_with(second) == 401 and status_with(third) == 401


@pytest.mark.django_db
def test_signing_out_of_the_web_session_revokes_the_users_tokens(client):
    user, other = UserFactory(), UserFactory()
    key, others = obtain(user)["token"], obtain(other)["token"]
    client.force_login(user)
    assert client.post("/accounts/logout/").status_code == 302
    assert status_with(key) == 401
    assert status_with(others) == 200  # another account's tokens are untouched


def _change_by_form(user, client):
    client.force_login(user)
    r = client.post(
        "/accounts/password_change/",
        {
            "old_password": PASSWORD,
            "new_password1": "N3w-pass-phrase",
            "new_password2": "N3w-pass-phrase",
        },
    )
    assert r.status_code == 302, r.content


def _change_by_admin(user, client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    r = client.post(
        f"/admin/tutoring/user/{user.pk}/password/",
        {"password1": "N3w-pass-phrase", "password2": "N3w-pass-phrase", "usable_password": "true"},
    )
    assert r.status_code == 302, r.content


def _change_by_set_password(user, client):
    user.set_password("N3w-pass-phrase")
    user.save()


@pytest.mark.django_db
@pytest.mark.parametrize("change", [_change_by_form, _change_by_admin, _change_by_set_password])
def test_a_password_change_revokes_the_users_tokens(change, client):
    user = UserFactory()
    key = obtain(user)["token"]
    change(user, client)
    assert status_with(key) == 401


@pytest.mark.django_db
def test_only_a_new_password_hash_revokes_the_tokens():
    user = UserFactory()
    key = obtain(user)["token"]
    user.first_name = "Ada"
    user.save()
    user.save(update_fields=["password"])  # the same hash written again
    assert status_with(key) == 200
    user.set_password("N3w-pass-phrase")
    user.save(update_fields=["password"])
    assert status_with(key) == 401


@pytest.mark.django_db
def test_a_new_token_beyond_the_limit_revokes_the_oldest(settings):
    settings.API_TOKEN_LIMIT_PER_USER = 2
    user = UserFactory()
    keys = [obtain(user)["token"] for _ in range(3)]
    assert len(set(keys)) == 3
    assert [status_with(k) for k in keys] == [401, 200, 200]


@pytest.mark.django_db
def test_the_token_endpoint_ignores_a_stale_token_in_the_header():
    """A script whose old token expired or was revoked signs in again with it still set."""
    user = UserFactory()
    stale = obtain(user)["token"]
    APIClient(HTTP_AUTHORIZATION=f"Token {stale}").post("/api/auth/logout/")
    for header in (f"Token {stale}", "Token not-a-token"):
        client = APIClient(REMOTE_ADDR=next(_addresses), HTTP_AUTHORIZATION=header)
        assert status_with(obtain(user, client)["token"]) == 200


# --- the anonymous rate applies before authentication fails ------------------------------------


@pytest.fixture
def anon_rate_3_per_min(monkeypatch):
    """The anon scope at 3/min (THROTTLE_RATES is read once, at import), on a fresh history for
    the addresses these tests use (the cache outlives tests)."""
    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, "anon": "3/min"}
    )
    addresses = ["192.0.2.10", "192.0.2.11", "192.0.2.12"]
    cache.delete_many([f"throttle_{s}_{a}" for a in addresses for s in ("anon", "user")])
    return addresses


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [None, "Token not-a-token", "Token \xe9\xe9", "Token"],
    ids=["no-token", "unknown-token", "not-utf8", "no-key"],
)
def test_a_caller_without_a_valid_token_gets_429_past_the_anon_rate(anon_rate_3_per_min, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    client = APIClient(REMOTE_ADDR=anon_rate_3_per_min[0], **extra)
    paths = ["/api/courses/", "/api/sessions/1/", "/api/me/export/", "/api/courses/"]
    responses = [client.get(p) for p in paths]
    assert [r.status_code for r in responses] == [401, 401, 401, 429]
    last = responses[-1]
    assert int(last["Retry-After"]) > 0
    error = last.json()["error"]
    assert error["status"] == 429 and error["code"] == "throttled" and error["message"]


@pytest.mark.django_db
def test_a_signed_in_caller_stays_on_the_user_rate_after_anonymous_calls(anon_rate_3_per_min):
    address = anon_rate_3_per_min[1]
    anonymous = APIClient(REMOTE_ADDR=address)
    assert [anonymous.get("/api/courses/").status_code for _ in range(4)][-1] == 429
    key = obtain(UserFactory(), APIClient(REMOTE_ADDR=anon_rate_3_per_min[2]))["token"]
    signed_in = APIClient(REMOTE_ADDR=address, HTTP_AUTHORIZATION=f"Token {key}")
    assert [signed_in.get("/api/courses/").status_code for _ in range(5)] == [200] * 5


# --- from DRF's authtoken: the plain keys are dropped ------------------------------------------

BEFORE_KNOX = [("tutoring", "0003_session_open_idx")]


@pytest.fixture
def back_to_latest():
    yield
    call_command("migrate", verbosity=0)  # the schema the other tests expect


@pytest.mark.django_db(transaction=True)
def test_migrating_drops_the_plain_authtoken_keys(back_to_latest):
    """A database made before this change holds DRF's authtoken table (plain keys), its
    migration records and permissions; migrating removes all of them."""
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE_KNOX)
    user = UserFactory()
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamp "
            "with time zone NOT NULL, user_id bigint NOT NULL REFERENCES tutoring_user (id))"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, %s, %s)", ["a" * 40, timezone.now(), user.pk]
        )
        cursor.execute(
            "INSERT INTO django_migrations (app, name, applied) VALUES ('authtoken', "
            "'0004_alter_tokenproxy_options', %s)",
            [timezone.now()],
        )
    token_type, _ = ContentType.objects.get_or_create(app_label="authtoken", model="token")
    Permission.objects.create(content_type=token_type, codename="add_token", name="Can add Token")
    call_command("migrate", "tutoring", verbosity=0)
    assert "authtoken_token" not in connection.introspection.table_names()
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM django_migrations WHERE app = 'authtoken'")
        assert cursor.fetchone()[0] == 0
    assert not ContentType.objects.filter(app_label="authtoken").exists()
    assert not Permission.objects.filter(codename="add_token").exists()


@pytest.mark.django_db
def test_the_admin_lists_and_revokes_tokens_but_never_mints_one(admin_client):
    from knox.models import AuthToken

    user = UserFactory(username="token-holder")
    key = obtain(user)["token"]
    listing = admin_client.get("/admin/knox/authtoken/?q=token-holder")
    assert listing.status_code == 200 and b"token-holder" in listing.content
    assert admin_client.get("/admin/knox/authtoken/add/").status_code == 403
    digest = AuthToken.objects.get(user=user).pk
    r = admin_client.post(f"/admin/knox/authtoken/{digest}/delete/", {"post": "yes"})
    assert r.status_code == 302
    assert status_with(key) == 401


def test_the_lifetime_and_the_limit_are_read_from_the_environment():
    from tests.config.test_settings import _settings_value

    expr = '[settings.REST_KNOX["TOKEN_TTL"].total_seconds(), settings.API_TOKEN_LIMIT_PER_USER]'
    assert json.loads(_settings_value({}, expr).stdout) == [10 * 3600, 10]
    env = {"API_TOKEN_TTL_HOURS": "1.5", "API_TOKEN_LIMIT_PER_USER": "3"}
    assert json.loads(_settings_value(env, expr).stdout) == [1.5 * 3600, 3]
    for bad in ({"API_TOKEN_TTL_HOURS": "0"}, {"API_TOKEN_LIMIT_PER_USER": "0"}):
        refused = _settings_value(bad, expr)
        assert refused.returncode != 0 and "API_TOKEN_TTL_HOURS must be" in refused.stderr
