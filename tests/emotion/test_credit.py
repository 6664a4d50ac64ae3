"""One socket's credit (``emotion.credit.CreditBudget``) with a fake clock and a fake shared
budget: frames in flight, the window, release on analysis, timeout and close."""

import pytest

from emotion.credit import IN_FLIGHT_TIMEOUT_S, CreditBudget


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Shared:
    """The process's budget as a budget sees it: ``free`` more frames may be granted."""

    def __init__(self, free: int = 100):
        self.free, self.in_flight_total = free, 0
        self.forgotten: list = []

    def grant(self, sock, window_left: int) -> int:
        return max(0, min(window_left, self.free - self.in_flight_total))

    def take(self, sock, window_left: int) -> bool:
        return window_left > 0 and self.in_flight_total < self.free

    def forget(self, sock) -> None:
        self.forgotten.append(sock)


@pytest.fixture
def clock():
    return Clock()


def budget(clock, shared=None, window=4, offers=None) -> CreditBudget:
    offer = offers.append if offers is not None else (lambda n: None)
    return CreditBudget(shared or Shared(), window, offer, clock=clock)


def test_credit_is_the_window_less_the_frames_in_flight(clock):
    b = budget(clock)
    assert b.credit() == 4 and b.window_left() == 4
    b.accepted(0)
    b.accepted(1)
    assert b.credit() == 2 and b.window_left() == 2 and b.shared.in_flight_total == 2


def test_the_shared_budget_caps_credit(clock):
    shared = Shared(free=3)
    a, b = budget(clock, shared), budget(clock, shared)
    a.accepted(0)
    a.accepted(1)
    assert a.credit() == 1 and b.credit() == 1  # the window has room, the process less
    b.accepted(0)
    assert a.credit() == 0 and b.credit() == 0 and not a.take()


def test_a_full_window_takes_no_frame(clock):
    b = budget(clock, window=2)
    assert b.take()
    b.accepted(0)
    b.accepted(1)
    assert not b.take() and b.credit() == 0


def test_analysed_frames_free_their_credit_once(clock):
    b = budget(clock)
    for seq in (0, 1, 2):
        b.accepted(seq)
    b.analysed([0, 2, 2, 99])  # twice, and one never in flight: counted once, ignored
    assert b.in_flight == {1: clock.now} and b.shared.in_flight_total == 1
    assert b.credit() == 3


def test_a_frame_never_reported_analysed_stops_holding_credit(clock):
    b = budget(clock)
    b.accepted(0)
    clock.now += 10
    b.accepted(1)
    clock.now += IN_FLIGHT_TIMEOUT_S - 10  # frame 0's age is the timeout exactly: still held
    assert b.credit() == 2
    clock.now += 0.001
    assert b.credit() == 3 and list(b.in_flight) == [1] and b.shared.in_flight_total == 1
    clock.now += 10
    assert b.credit() == 4 and b.shared.in_flight_total == 0


def test_closing_gives_everything_back(clock):
    b = budget(clock)
    b.accepted(0)
    b.accepted(1)
    b.close()
    assert b.in_flight == {} and b.shared.in_flight_total == 0 and b.shared.forgotten == [b]
    b.close()  # again (disconnect after a crash already closed it): nothing more to give
    assert b.shared.in_flight_total == 0


def test_freed_credit_is_offered_through_the_socket(clock):
    offers = []
    b = budget(clock, offers=offers)
    b.offer_credit(2)
    assert offers == [2]


async def test_with_the_process_batcher(settings):
    """The real shared budget: two sockets' budgets share STREAM_MAX_IN_FLIGHT_TOTAL, and one
    that closes gives its frames back to the other."""
    from emotion.batcher import FrameBatcher

    settings.STREAM_MAX_IN_FLIGHT_TOTAL = 3
    batcher = FrameBatcher(size=32, wait_ms=200)
    a = CreditBudget(batcher, 4, lambda n: None)
    b = CreditBudget(batcher, 4, lambda n: None)
    assert a.credit() == 3 and b.credit() == 0
    for seq in range(3):
        assert a.take()
        a.accepted(seq)
    assert batcher.in_flight_total == 3 and a.credit() == 0 and b.credit() == 0
    a.close()
    assert batcher.in_flight_total == 0 and b.credit() == 3
