"""Admission by time: how long a new request would queue, from how long recent ones took."""

from __future__ import annotations

# Weight of the newest duration in the moving average: recent load counts most.
ALPHA = 0.3


class WaitEstimate:
    """The expected wait for a free generation slot, given the requests in flight.

    vLLM runs up to `slots` sequences at once (generation.max_num_seqs); a request beyond them
    waits for earlier ones to finish, about one mean duration per `slots` requests ahead of it.
    """

    def __init__(self, slots: int) -> None:
        self.slots = max(1, slots)
        self.mean_s = 0.0  # 0: nothing has finished yet, so nothing is refused by time

    def finished(self, seconds: float) -> None:
        """A request took this long, from admission to its last token."""
        self.mean_s = seconds if self.mean_s == 0 else (1 - ALPHA) * self.mean_s + ALPHA * seconds

    def wait(self, in_flight: int) -> float:
        """Seconds a request would wait to start, `in_flight` counting it and those before it."""
        ahead = in_flight - self.slots
        if ahead <= 0 or self.mean_s == 0:
            return 0.0
        return ahead * self.mean_s / self.slots
