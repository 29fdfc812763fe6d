"""One deadline per request: made where the request enters, passed down, read by every wait (no timer per layer)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

Clock = Callable[[], float]


class Deadline:
    """The moment a request stops being worth work, on `clock` (seconds; `time.monotonic` by default).

    `Deadline.none()` never passes: a wait that reads it waits as long as the work takes.
    """

    def __init__(self, at: float, clock: Clock = time.monotonic):
        self.at, self.clock = at, clock

    @classmethod
    def after(cls, seconds: float, clock: Clock = time.monotonic) -> "Deadline":
        return cls(clock() + seconds, clock)

    @classmethod
    def none(cls, clock: Clock = time.monotonic) -> "Deadline":
        return cls(math.inf, clock)

    @property
    def bounded(self) -> bool:
        return self.at != math.inf

    def remaining(self) -> float:
        """Seconds left (0 once passed; inf without a deadline)."""
        return max(0.0, self.at - self.clock())

    def passed(self) -> bool:
        return self.clock() >= self.at

    def remaining_us(self) -> int:
        """Microseconds left as Triton's request `timeout` takes it: at least 1 while bounded, 0 (none) without."""
        return max(1, int(self.remaining() * 1e6)) if self.bounded else 0

    def sooner(self, seconds: float | None) -> "Deadline":
        """This deadline, or `seconds` from now when that comes first (None: this one)."""
        if seconds is None:
            return self
        return Deadline(min(self.at, self.clock() + seconds), self.clock)
