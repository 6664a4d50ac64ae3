"""JSON from clients, bounded in size and nesting depth (API bodies and socket messages).

Python's ``json`` recurses once per nesting level, so a body of a few KB of ``[[[[…`` raises
``RecursionError``, which no caller expects: a 500 over the API, close 1011 on a socket.
Nothing this product accepts nests more than a few levels, so depth is refused well before
that, from a scan of the text that costs nothing like a parse.
"""

from __future__ import annotations

import io
import json
import re

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding

#: nesting levels (objects and arrays) a client's JSON may have
MAX_JSON_DEPTH = 32
#: bytes a JSON request body may have: the API's JSON inputs are a few hundred bytes
MAX_JSON_BODY_BYTES = 256 * 1024

# a bracket, or a whole string (so that brackets inside strings are skipped)
_TOKENS = re.compile(r'[\[\]{}]|"[^"\\]*(?:\\.[^"\\]*)*"')


class JSONRejected(ValueError):
    """JSON refused before or instead of being parsed; ``str()`` says why."""


def json_depth_check(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise ``JSONRejected`` when ``text`` nests objects/arrays deeper than ``max_depth``."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", errors="replace")
    if text.count("[") + text.count("{") <= max_depth:
        return
    depth = 0
    for m in _TOKENS.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > max_depth:
                raise JSONRejected(f"JSON nested deeper than {max_depth} levels")
        elif c in "]}":
            depth -= 1


def json_loads_bounded(
    text: str | bytes, *, max_bytes: int, max_depth: int = MAX_JSON_DEPTH
) -> object:
    """``json.loads`` for client input: ``JSONRejected`` when it is over ``max_bytes`` (as
    UTF-8) or nested deeper than ``max_depth``, ``ValueError`` when it is not JSON."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > max_bytes:
        raise JSONRejected(f"{size} bytes of JSON exceeds the limit of {max_bytes}")
    json_depth_check(text, max_depth)
    try:
        return json.loads(text)
    except RecursionError:  # a backstop: the scan above refuses such input first
        raise JSONRejected(f"JSON nested deeper than {max_depth} levels") from None


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser, reading at most ``MAX_JSON_BODY_BYTES`` and refusing JSON nested
    deeper than ``MAX_JSON_DEPTH``: a 413 or a 400 in the API's error shape, never a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        from config.api import RequestRejected  # config.api → DRF views → this parser

        encoding = get_encoding(parser_context or {})
        raw = stream.read(MAX_JSON_BODY_BYTES + 1)
        if len(raw) > MAX_JSON_BODY_BYTES:
            raise RequestRejected(
                f"JSON body exceeds the limit of {MAX_JSON_BODY_BYTES} bytes",
                "request_too_large",
                413,
            )
        try:
            json_depth_check(raw.decode(encoding))
        except UnicodeDecodeError as e:
            raise ParseError(f"JSON parse error - not {encoding} text ({e.reason})") from None
        except JSONRejected as e:
            raise ParseError(f"JSON parse error - {e}") from None
        try:
            return super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError:  # a backstop: the scan above refuses such input first
            msg = f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels"
            raise ParseError(msg) from None
