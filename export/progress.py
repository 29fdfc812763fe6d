"""Stage-by-stage progress lines with elapsed time, on stderr, for the long export steps."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager


class Progress:
    """Prints `[i/n] what ... done in Xs` for each step; a failing step says so before re-raising."""

    def __init__(self, total: int, stream=None):
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr

    @contextmanager
    def step(self, what: str):
        self.done += 1
        print(f"[{self.done}/{self.total}] {what} ...", file=self.stream, flush=True)
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            print(f"[{self.done}/{self.total}] {what}: FAILED after {time.perf_counter() - start:.1f}s", file=self.stream, flush=True)
            raise
        print(f"[{self.done}/{self.total}] {what}: done in {time.perf_counter() - start:.1f}s", file=self.stream, flush=True)
