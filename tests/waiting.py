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
