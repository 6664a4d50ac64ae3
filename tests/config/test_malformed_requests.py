"""Every malformed request under /api/ gets the API's error shape with a reason: a multipart
body Django cannot parse, a body in a format no parser takes (415), bad JSON or encoding, a
method the endpoint lacks (405), a Host header not served (it said only "Bad request.")."""

import http.client
import json

import pytest
from django.http.multipartparser import MultiPartParserError
from django.test import Client, RequestFactory

from config import api
from tests.servers import serve

MULTIPART = "multipart/form-data; boundary=xyz"
FILE_PART = (
    b'--xyz\r\nContent-Disposition: form-data; name="f"; filename="a.png"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\na\r\n--xyz--\r\n"
)
CASES = [
    # (method, content type, body, extra headers, status, words the message must hold)
    ("POST", "multipart/form-data", b"--x\r\n", {}, 400, "Invalid boundary"),
    ("POST", "multipart/form-data; boundary=\x01", b"--x\r\n", {}, 400, "Invalid boundary"),
    ("POST", MULTIPART, FILE_PART, {}, 400, "base64"),
    ("POST", "application/json", b"{bad", {}, 400, "JSON parse error"),
    ("POST", "application/json", b'{"username": "\xff"}', {}, 400, "utf-8"),
    ("POST", "application/xml", b"<a/>", {}, 415, "application/xml"),
    ("PUT", "application/json", b"{}", {}, 405, "PUT"),
    ("POST", "application/json", b"{}", {"HTTP_HOST": "evil.example"}, 400, "Host header"),
]


def assert_error_shape(status, body: bytes, expected_status, words):
    assert status == expected_status, body[:300]
    error = json.loads(body)["error"]
    assert set(error) == {"status", "code", "message", "details"}
    assert error["status"] == expected_status and error["code"]
    assert words in error["message"], error["message"]


@pytest.mark.django_db
def test_every_malformed_request_under_api_gets_the_error_shape_with_a_reason():
    c = Client(raise_request_exception=False)
    for method, ctype, body, extra, status, words in CASES:
        r = c.generic(method, "/api/auth/token/", body, content_type=ctype, **extra)
        assert r["Content-Type"] == "application/json", (method, ctype, r.content[:200])
        assert_error_shape(r.status_code, r.content, status, words)
    # outside a DRF view (handler400): the parser's reason, not a bare "Bad request."
    r = api.bad_request(RequestFactory().post("/api/x/"), MultiPartParserError("Invalid boundary"))
    assert_error_shape(r.status_code, r.content, 400, "Invalid boundary")


@pytest.mark.django_db(transaction=True)
def test_a_malformed_multipart_body_gets_the_error_shape_from_the_real_server(tmp_path):
    """Through the real server: daphne's Twisted parsed multipart bodies itself and answered a
    bare 400 before Django ran; uvicorn hands the body to Django."""
    with serve(tmp_path) as url:
        conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
        conn.request(
            "POST", "/api/auth/token/", b"--x\r\n", {"Content-Type": "multipart/form-data"}
        )
        r = conn.getresponse()
        assert_error_shape(r.status, r.read(), 400, "boundary")
