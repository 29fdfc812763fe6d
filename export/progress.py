"""Stage-by-stage progress lines with elapsed time, logged (INFO) for the long export steps."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

log = logging.getLogger(__name__)


class Progress:
    """Logs `[i/n] what ... done in Xs` for each step; a failing step says so before re-raising."""

    def __init__(self, total: int):
        self.total = total
        self.done = 0

    @contextmanager
    def step(self, what: str):
        self.done += 1
        log.info("[%d/%d] %s ...", self.done, self.total, what)
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            log.error("[%d/%d] %s: FAILED after %.1fs", self.done, self.total, what, time.perf_counter() - start)
            raise
        log.info("[%d/%d] %s: done in %.1fs", self.done, self.total, what, time.perf_counter() - start)
