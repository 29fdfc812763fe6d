"""Waiting on state in tests: poll a condition instead of sleeping a guessed time."""

from __future__ import annotations

import time


def wait_until(condition, timeout: float, interval: float = 0.1) -> bool:
    """Poll `condition()` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


# How long a test waits for state that comes in well under a second on a healthy server: only a hung one reaches it,
# so it bounds a failure, never a speed.
GUARD = 240
