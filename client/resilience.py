"""Retries with backoff and a deadline, spread over several endpoints (replicas) with failover."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .transport import RerankError

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

# Statuses that say "this server cannot take the request now", never "the request is wrong".
# Scoring is a pure function of its inputs, so re-sending such a request cannot double-apply anything.
RETRYABLE_STATUSES = frozenset({
    "StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.RESOURCE_EXHAUSTED",
    "StatusCode.CANCELLED", "StatusCode.UNKNOWN", "502", "503", "504",
})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one request tries before it fails.

    Args:
        attempts: Tries per request, across all endpoints (1 = no retry).
        initial_backoff: Seconds before the second try; doubled (`multiplier`) per try up to `max_backoff`.
        deadline: Seconds from the first try after which no new try starts (None: `attempts` alone bounds it).
        cooldown: Seconds an endpoint that failed is skipped while another one is healthy.
    """

    attempts: int = 8
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    multiplier: float = 2.0
    deadline: float | None = 120.0
    cooldown: float = 2.0

    def __post_init__(self):
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and multiplier >= 1")

    def backoff(self, retry: int) -> float:
        """Sleep before retry number `retry` (1-based), with ±25% jitter so clients do not move in step."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry - 1))
        return base * random.uniform(0.75, 1.25)


NO_RETRY = RetryPolicy(attempts=1, deadline=None)


def is_retryable(error: BaseException) -> bool:
    """True for failures of the server or the connection; False for errors about the request itself."""
    from tritonclient.utils import InferenceServerException

    if isinstance(error, InferenceServerException):
        status = str(error.status())
        if status in RETRYABLE_STATUSES:
            return True
        # HTTP clients report a refused/reset connection without a status.
        return status == "None" and any(s in (error.message() or "") for s in ("onnect", "reset", "closed"))
    if isinstance(error, (OSError, asyncio.TimeoutError)):  # refused, reset, timed out
        return True
    try:
        import aiohttp  # the HTTP transport's connection errors
    except ImportError:
        return False
    return isinstance(error, aiohttp.ClientError)


def status_of(error: BaseException) -> str | None:
    """The status Triton (or the transport) gave `error`, as text; None when it had none."""
    from tritonclient.utils import InferenceServerException

    if isinstance(error, InferenceServerException) and error.status() is not None:
        return str(error.status())
    return None


def describe(error: BaseException) -> str:
    from tritonclient.utils import InferenceServerException

    if isinstance(error, InferenceServerException):
        return error.message() or str(error)
    if isinstance(error, RerankError):
        return str(error)
    return f"{type(error).__name__}: {error}"


@dataclass
class CallStats:
    """What the client did: requests, tries, retries, switches to another endpoint, failures."""

    requests: int = 0
    attempts: int = 0
    retries: int = 0
    failovers: int = 0
    failures: int = 0
    per_endpoint: dict[str, int] = field(default_factory=dict)


class EndpointPool(Generic[T]):
    """Round-robin over endpoints; one that fails is skipped for `cooldown` seconds while others are up."""

    def __init__(self, endpoints: dict[str, T], policy: RetryPolicy):
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        self.urls = list(endpoints)
        self.endpoints = endpoints
        self.policy = policy
        self.stats = CallStats(per_endpoint={u: 0 for u in self.urls})
        self._down_until = {u: 0.0 for u in self.urls}
        self._next = 0
        self._lock = threading.Lock()

    def pick(self, avoid: str | None = None) -> str:
        """The next healthy endpoint (not `avoid` when another is healthy); the soonest back if none is."""
        with self._lock:
            now, n = time.monotonic(), len(self.urls)
            order = [(self._next + i) % n for i in range(n)]
            healthy = [i for i in order if self._down_until[self.urls[i]] <= now]
            preferred = [i for i in healthy if self.urls[i] != avoid] or healthy
            if preferred:
                chosen = preferred[0]
            else:
                chosen = min(order, key=lambda i: (self.urls[i] == avoid, self._down_until[self.urls[i]]))
            self._next = (chosen + 1) % n
            return self.urls[chosen]

    def mark_down(self, url: str) -> None:
        with self._lock:
            self._down_until[url] = time.monotonic() + self.policy.cooldown

    def mark_up(self, url: str) -> None:
        with self._lock:
            self._down_until[url] = 0.0

    def _record_attempt(self, url: str, retry: int, previous: str | None) -> None:
        with self._lock:
            self.stats.attempts += 1
            self.stats.per_endpoint[url] += 1
            if retry:
                self.stats.retries += 1
                if url != previous:
                    self.stats.failovers += 1

    def _fail(self, what: str, tries: int, started: float, error: BaseException) -> RerankError:
        with self._lock:
            self.stats.failures += 1
        unavailable, status = is_retryable(error), status_of(error)
        if tries == 1 and not unavailable:
            return RerankError(f"{what}: {describe(error)}", status=status)
        return RerankError(
            f"{what}: failed after {tries} tries in {time.monotonic() - started:.1f}s over "
            f"{', '.join(self.urls)}; last error: {describe(error)}", unavailable=unavailable, status=status,
        )

    def _after_failure(self, url: str, retry: int, started: float, error: BaseException) -> float | None:
        """Seconds to sleep before the next try, or None when the request must fail now."""
        if not is_retryable(error):
            return None
        self.mark_down(url)
        if retry + 1 >= self.policy.attempts:
            return None
        sleep = self.policy.backoff(retry + 1)
        deadline = self.policy.deadline
        if deadline is not None and time.monotonic() + sleep - started >= deadline:
            return None
        until = f", for up to {deadline:g} s in all" if deadline is not None else ""
        # The first retry says what the caller is waiting for; the following ones only with -v.
        log.log(logging.INFO if retry == 0 else logging.DEBUG, "no answer from %s (%s); trying again (try %d of %d%s)",
                url, describe(error), retry + 2, self.policy.attempts, until)
        return sleep

    def _start(self) -> float:
        with self._lock:
            self.stats.requests += 1
        return time.monotonic()

    async def acall(self, what: str, fn: Callable[[T], Awaitable[R]]) -> R:
        """Await `fn(endpoint)`, retrying retryable failures on the next endpoint with backoff."""
        started, previous = self._start(), None
        for retry in range(self.policy.attempts):
            url = self.pick(avoid=previous)
            self._record_attempt(url, retry, previous)
            try:
                result = await fn(self.endpoints[url])
            except Exception as error:  # noqa: BLE001
                sleep = self._after_failure(url, retry, started, error)
                if sleep is None:
                    raise self._fail(what, retry + 1, started, error) from None
                previous = url
                await asyncio.sleep(sleep)
                continue
            self.mark_up(url)
            return result
        raise AssertionError("unreachable: the loop returns or raises")


def as_url_list(url: str | Sequence[str]) -> list[str]:
    urls = [url] if isinstance(url, str) else list(url)
    if not urls or not all(isinstance(u, str) and u for u in urls):
        raise ValueError("url must be 'host:port' or a non-empty list of them")
    if len(set(urls)) != len(urls):
        raise ValueError(f"duplicate endpoints in {urls}")
    return urls
