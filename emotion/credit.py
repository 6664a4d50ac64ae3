"""One stream socket's credit: its frames in flight and its window, within the server
process's shared budget (``emotion.batcher.FrameBatcher``, which grants credit, takes frames
and offers freed credit to sockets that had none). Pure: no socket, no database; the clock is
injected so that the in-flight timeout is tested without waiting.

A socket's credit is for the kind of frame it sent last. Pictures and crops wait for a worker:
their credit comes from the workers' room and is held until they are analysed. Cues frames
need no worker (the server process writes them itself, in its batcher): their credit is the
socket's window within the cues the process may hold unwritten, and is free again as soon as
their batch is written, so hundreds of cues-only learners are not held to the workers' room,
which with no picture to measure is ``ADMISSION_FLOOR`` frames for every socket together."""

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
    def cues_credit(self, window_left: int) -> int: ...
    def take_cues(self, window_left: int) -> bool: ...


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
        cues: bool = False,
    ):
        self.shared, self.window, self.offer, self.clock = shared, window, offer, clock
        self.in_flight: dict[int, float] = {}  # sequence → when accepted
        # credit is for cues frames: the last frame taken was one (or, from the start, the
        # session may send nothing else)
        self.cues = cues

    def credit(self) -> int:
        """Frames the socket may send now: its own window, capped by what the server process
        and the workers can take (``FrameBatcher.grant``), so that past saturation clients
        skip frames instead of uploading frames that are refused or queued."""
        now = self.clock()
        self._release([s for s, t in self.in_flight.items() if now - t > IN_FLIGHT_TIMEOUT_S])
        if self.cues:
            return self.shared.cues_credit(self.window_left())
        return self.shared.grant(self, self.window_left())

    def window_left(self) -> int:
        return self.window - len(self.in_flight)

    def offer_credit(self, credit: int) -> None:
        """Credit freed for this socket while it had none."""
        self.offer(credit)

    def take(self, kind: str = "picture") -> bool:
        """Whether a frame of ``kind`` just received may be accepted (it uses the socket's
        credit). A cues frame is not counted in flight: the socket awaits its batch's write
        before it reads its next frame, so none of its cues frames waits once it is acked."""
        if kind == "cues":
            if not self.cues:  # its credit for pictures (granted, reserved) goes back
                self.cues = True
                self.shared.forget(self)
            return self.shared.take_cues(self.window_left())
        self.cues = False
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
