"""The login page (issue 23): says what the product is, keeps the username after a wrong
password (and when throttled), and every page links the favicon."""

import re
import xml.etree.ElementTree as ET

import pytest

from tests.config.test_login import _post, addr, auth_rate_3_per_min  # noqa: F401 (fixtures)
from tests.conftest import ROOT
from tests.factories import UserFactory


def username_value(html: str) -> str | None:
    tag = re.search(r"<input id=\"id_username\"[^>]*>", html).group(0)
    m = re.search(r'value="([^"]*)"', tag)
    return m and m.group(1)


@pytest.mark.django_db
def test_a_wrong_password_keeps_the_username(client, addr):  # noqa: F811
    UserFactory(username="ana")
    r = _post(client, "/accounts/login/", addr, "ana", "wrong-password")
    html = r.content.decode()
    assert r.status_code == 200 and "didn't match" in html
    assert username_value(html) == "ana"
    assert re.search(r'id="id_password"[^>]* autofocus', html)  # the password to type again


@pytest.mark.django_db
def test_a_throttled_attempt_keeps_the_username_too(client, auth_rate_3_per_min, addr):  # noqa: F811
    for _ in range(4):
        r = _post(client, "/accounts/login/", addr, "ana", "wrong-password")
    assert r.status_code == 429 and username_value(r.content.decode()) == "ana"


@pytest.mark.django_db
def test_the_page_says_what_the_product_is_and_has_a_favicon(client):
    html = client.get("/accounts/login/").content.decode()
    assert "shows instructors how present and engaged their" in html
    assert username_value(html) == ""
    href = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', html).group(1)
    assert href == "/static/favicon.svg"
    svg = ET.parse(ROOT / "static" / href.removeprefix("/static/")).getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
