"""One stream socket's credit: its frames in flight and its window, within the server
process's shared budget (``emotion.batcher.FrameBatcher``, which grants credit, takes frames
and offers freed credit to sockets that had none). Pure: no socket, no database; the clock is
injected so that the in-flight timeout is tested without waiting."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol

IN_FLIGHT_TIMEOUT_S = 30.0  # a frame never reported analysed stops holding credit after this


class SharedBudget(Protocol):
    """What a budget needs of the process's batcher (``FrameBatcher``)."""

    in_flight_total: int

    def grant(self, sock, window_left: int) -> int: ...
    def take(self, sock, window_left: int) -> bool: ...
    def forget(self, sock) -> None: ...


class CreditBudget:
    """Frames one socket may have in flight (accepted, not yet reported analysed): at most
    ``window`` of its own, and what the shared budget grants it.

    The shared budget knows the socket by this object: it asks ``window_left()`` and, when
    credit is freed for a socket that had none, calls ``offer_credit(n)``, which hands it to
    ``offer`` (the socket tells its client)."""

    def __init__(
        self,
        shared: SharedBudget,
        window: int,
        offer: Callable[[int], None],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.shared, self.window, self.offer, self.clock = shared, window, offer, clock
        self.in_flight: dict[int, float] = {}  # sequence → when accepted

    def credit(self) -> int:
        """Frames the socket may send now: its own window, capped by what the server process
        and the workers can take (``FrameBatcher.grant``), so that past saturation clients
        skip frames instead of uploading frames that are refused or queued."""
        now = self.clock()
        self._release([s for s, t in self.in_flight.items() if now - t > IN_FLIGHT_TIMEOUT_S])
        return self.shared.grant(self, self.window_left())

    def window_left(self) -> int:
        return self.window - len(self.in_flight)

    def offer_credit(self, credit: int) -> None:
        """Credit freed for this socket while it had none."""
        self.offer(credit)

    def take(self) -> bool:
        """Whether a frame just received may be accepted (it uses the socket's credit)."""
        return self.shared.take(self, self.window_left())

    def accepted(self, sequence: int) -> None:
        self.in_flight[sequence] = self.clock()
        self.shared.in_flight_total += 1

    def analysed(self, sequences: Iterable[int]) -> None:
        """Frames reported analysed: their credit is free again."""
        self._release(sequences)

    def close(self) -> None:
        """The socket is gone: its frames in flight and its unused credit go back."""
        self._release(list(self.in_flight))
        self.shared.forget(self)

    def _release(self, sequences: Iterable[int]) -> None:
        for seq in sequences:
            if self.in_flight.pop(seq, None) is not None:
                self.shared.in_flight_total -= 1
