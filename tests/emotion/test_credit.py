"""One socket's credit (``emotion.credit.CreditBudget``) with a fake clock and a fake shared
budget: frames in flight, the window, release on analysis, timeout and close."""

import asyncio
import threading
import time

import pytest

from emotion import batcher as batcher_module
from emotion.batcher import FrameBatcher
from emotion.credit import IN_FLIGHT_TIMEOUT_S, CreditBudget
from emotion.services import AcceptResult, IncomingFrame


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


def budget(clock, shared=None, window=4, offers=None, cues=False) -> CreditBudget:
    offer = offers.append if offers is not None else (lambda n: None)
    return CreditBudget(shared or Shared(), window, offer, clock=clock, cues=cues)


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


class SharedWithCues(Shared):
    """And the cues frames the process holds unwritten, of at most ``cues_cap``."""

    def __init__(self, free: int = 100, cues_cap: int = 100):
        super().__init__(free)
        self.cues_cap, self.cues_pending = cues_cap, 0

    def cues_credit(self, window_left: int) -> int:
        return max(0, min(window_left, self.cues_cap - self.cues_pending))

    def take_cues(self, window_left: int) -> bool:
        return window_left > 0 and self.cues_pending < self.cues_cap


def test_cues_frames_have_their_own_credit(clock):
    """The workers' room (``free``) is spent, yet a socket sending cues frames gets its window:
    cues frames wait for no worker. Its unused picture grant goes back as it switches."""
    shared = SharedWithCues(free=0)
    b = budget(clock, shared)
    assert b.credit() == 0 and not b.take()
    assert b.take("cues") and b.credit() == 4 and shared.forgotten == [b]
    assert b.take("cues") and shared.forgotten == [b]  # given back once, not per frame
    assert b.in_flight == {} and shared.in_flight_total == 0
    assert not b.take("picture") and b.credit() == 0  # a picture again: the workers' credit


def test_cues_credit_is_bounded_by_the_window_and_the_process(clock):
    shared = SharedWithCues(cues_cap=6)
    b = budget(clock, shared, cues=True)
    assert b.credit() == 4
    b.accepted(0)  # a crop still waiting for the worker fills a place of the window
    assert b.credit() == 3
    shared.cues_pending = 5  # other sockets' cues frames not yet written
    assert b.credit() == 1 and b.take("cues")
    shared.cues_pending = 6
    assert b.credit() == 0 and not b.take("cues")


async def test_cues_credit_with_the_process_batcher(settings, monkeypatch):
    """The real batcher: with the workers' room at nothing, a socket still gets its window for
    cues frames; the cues held unwritten are capped (STREAM_MAX_PENDING_CUES), and their
    credit is free again once their batch is written."""
    settings.STREAM_MAX_PENDING_CUES = 3
    written = threading.Event()

    def device_frames_accept(*, items, max_pending=None):
        written.wait(10)
        return [AcceptResult(accepted=[{"sequence": f.sequence}]) for _, f in items]

    monkeypatch.setattr(batcher_module, "device_frames_accept", device_frames_accept)
    batcher = FrameBatcher(size=32, wait_ms=200)
    # the workers can take nothing more (a reading of no room, neither re-read nor stale)
    batcher._room = (time.monotonic() + 60, 0, 0)
    socks = [CreditBudget(batcher, 2, lambda n: None) for _ in range(4)]
    assert [s.credit() for s in socks] == [0, 0, 0, 0]  # for pictures
    pending = []
    for i, sock in enumerate(socks[:3]):
        assert sock.take("cues")
        frame = IncomingFrame(data=b"", sequence=i, kind="cues", cues={"face": False})
        pending.append(asyncio.ensure_future(batcher.accept_device(None, frame)))
        await asyncio.sleep(0)
    assert batcher.cues_pending() == 3
    assert not socks[3].take("cues")  # the process holds its cap
    assert [s.credit() for s in socks] == [0, 0, 0, 0]
    written.set()
    results = await asyncio.gather(*pending)
    assert [r.accepted[0]["sequence"] for r in results] == [0, 1, 2]
    assert batcher.cues_pending() == 0 and batcher.in_flight_total == 0
    assert [s.credit() for s in socks] == [2, 2, 2, 2]  # each its window: none holds any
    assert socks[3].take("cues") and socks[3].credit() == 2
