"""Under CI=true a missing service fails the test; elsewhere it skips with the reason."""

import pytest
from _pytest.outcomes import Failed, Skipped

from tests.services import require_service, tcp_reachable


def test_closed_port_is_unreachable():
    assert not tcp_reachable("redis://127.0.0.1:1/0", 6379)


def test_missing_service_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(Failed, match="CI=true"):
        require_service("Redis", False, "redis://127.0.0.1:1")


def test_missing_service_skips_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(Skipped, match="Redis is not reachable"):
        require_service("Redis", False, "redis://127.0.0.1:1")


def test_reachable_service_passes(monkeypatch):
    monkeypatch.setenv("CI", "true")
    require_service("Redis", True)
