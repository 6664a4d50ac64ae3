"""URL converter for database ids: digits that fit a PostgreSQL bigint, else no match (404).

Registered once, on import, as ``<id:name>`` for both the HTTP and WebSocket URL patterns.
"""

from django.urls import register_converter


class IdConverter:
    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value) -> str:
        return str(int(value))


register_converter(IdConverter, "id")
