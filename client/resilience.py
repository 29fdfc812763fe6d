"""Retries that cannot storm (table-driven, within the request's deadline and a retry budget), spread over several
endpoints (replicas) with failover."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from mxbai_triton.core.deadline import Clock, Deadline
from mxbai_triton.core.errors import KINDS, ErrorKind, Retry, kind_of_triton

from .transport import RerankError

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

@dataclass(frozen=True)
class RetryPolicy:
    """How hard one request tries before it fails, and how much extra load all retries together may add.

    Only failures the error table (core/errors.py) marks retryable are tried again: an endpoint that
    took no work (down, restarting, draining: on another endpoint) and a refusal for load (overloaded,
    rate limited: after the backoff). Never a request whose deadline passed, never an error about the
    request, never a timeout. A retry after a refusal for load also needs room in the client's retry
    budget: at most `budget_ratio` of the requests started in the last `budget_window` seconds (at
    least `budget_min`), as gRPC's retry throttling and Envoy's retry budgets bound them, so that
    retries cannot multiply the load of a server that is already overloaded.

    Args:
        attempts: Tries per request, across all endpoints (1 = no retry).
        initial_backoff: Seconds before the second try; doubled (`multiplier`) per try up to `max_backoff`.
        deadline: Seconds from the first try after which no new try starts (None: `attempts` and the
            request's own deadline bound it).
        cooldown: Seconds an endpoint that failed is skipped while another one is healthy.
        budget_ratio: Retries as a share of requests, over the window.
        budget_window: Seconds the budget counts requests and retries over.
        budget_min: Retries allowed per window whatever the traffic (a lone request rides out a blip).
    """

    attempts: int = 8
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    multiplier: float = 2.0
    deadline: float | None = 120.0
    cooldown: float = 2.0
    budget_ratio: float = 0.1
    budget_window: float = 10.0
    budget_min: int = 10

    def __post_init__(self):
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and multiplier >= 1")
        if self.budget_ratio < 0 or self.budget_window <= 0 or self.budget_min < 0:
            raise ValueError("budget_ratio and budget_min must be >= 0 and budget_window > 0")

    def backoff(self, retry: int) -> float:
        """Sleep before retry number `retry` (1-based), with ±25% jitter so clients do not move in step."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry - 1))
        return base * random.uniform(0.75, 1.25)


NO_RETRY = RetryPolicy(attempts=1, deadline=None)


class RetryBudget:
    """Requests and retries started over the last `window` seconds; a retry is allowed while retries stay
    within `ratio` of the requests (at least `minimum`)."""

    def __init__(self, ratio: float, window: float, minimum: int, clock: Clock = time.monotonic):
        self.ratio, self.window, self.minimum, self.clock = ratio, window, minimum, clock
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()
        self.refused = 0

    def _trim(self, now: float) -> None:
        for stamps in (self._requests, self._retries):
            while stamps and stamps[0] <= now - self.window:
                stamps.popleft()

    def request(self) -> None:
        self._requests.append(self.clock())

    def try_spend(self) -> bool:
        """Take one retry from the budget; False (and counted) when it has no room."""
        now = self.clock()
        self._trim(now)
        if len(self._retries) >= max(self.minimum, self.ratio * len(self._requests)):
            self.refused += 1
            return False
        self._retries.append(now)
        return True


# gRPC/HTTP messages of a connection that broke under a request (the server died or closed it): no answer came.
_BROKEN_CONNECTION = ("onnect", "reset", "closed", "Socket closed", "Stream removed", "GOAWAY")


def error_kind(error: BaseException, deadline: Deadline) -> ErrorKind:
    """What a failed try means (core/errors.py): a passed deadline first, whatever the transport raised for it."""
    from tritonclient.utils import InferenceServerException

    if deadline.passed():
        return ErrorKind.DEADLINE_EXCEEDED
    if isinstance(error, RerankError):
        return error.kind
    if isinstance(error, InferenceServerException):
        status, message = status_of(error), error.message() or ""
        if status in (None, "StatusCode.UNKNOWN") and any(s in message for s in _BROKEN_CONNECTION):
            return ErrorKind.BACKEND_UNAVAILABLE
        return kind_of_triton(status, message)
    if isinstance(error, (asyncio.TimeoutError, TimeoutError)):
        return ErrorKind.DEADLINE_EXCEEDED
    if isinstance(error, OSError):  # refused, reset
        return ErrorKind.BACKEND_UNAVAILABLE
    try:
        import aiohttp  # the HTTP transport's connection errors
    except ImportError:
        return ErrorKind.INTERNAL
    return ErrorKind.BACKEND_UNAVAILABLE if isinstance(error, aiohttp.ClientError) else ErrorKind.INTERNAL


def status_of(error: BaseException) -> str | None:
    """The status Triton (or the transport) gave `error`, as text; None when it had none."""
    from tritonclient.utils import InferenceServerException

    if isinstance(error, InferenceServerException) and error.status() is not None:
        return str(error.status())
    return getattr(error, "status", None) if isinstance(error, RerankError) else None


def describe(error: BaseException) -> str:
    from tritonclient.utils import InferenceServerException

    if isinstance(error, InferenceServerException):
        return error.message() or str(error)
    if isinstance(error, RerankError):
        return str(error)
    return f"{type(error).__name__}: {error}"


@dataclass
class CallStats:
    """What the client did: requests, tries, retries, switches to another endpoint, failures, and the retries
    its budget refused."""

    requests: int = 0
    attempts: int = 0
    retries: int = 0
    failovers: int = 0
    failures: int = 0
    budget_refused: int = 0
    per_endpoint: dict[str, int] = field(default_factory=dict)


class EndpointPool(Generic[T]):
    """Round-robin over endpoints; one that fails is skipped for `cooldown` seconds while others are up."""

    def __init__(self, endpoints: dict[str, T], policy: RetryPolicy, clock: Clock = time.monotonic):
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        self.urls = list(endpoints)
        self.endpoints = endpoints
        self.policy = policy
        self.clock = clock
        self.budget = RetryBudget(policy.budget_ratio, policy.budget_window, policy.budget_min, clock)
        self.stats = CallStats(per_endpoint={u: 0 for u in self.urls})
        self._down_until = {u: 0.0 for u in self.urls}
        self._next = 0
        self._lock = threading.Lock()

    def pick(self, avoid: str | None = None) -> str:
        """The next healthy endpoint (not `avoid` when another is healthy); the soonest back if none is."""
        with self._lock:
            now, n = self.clock(), len(self.urls)
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
            self._down_until[url] = self.clock() + self.policy.cooldown

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

    def _fail(self, what: str, tries: int, started: float, error: BaseException, kind: ErrorKind) -> RerankError:
        with self._lock:
            self.stats.failures += 1
        status = status_of(error)
        if kind is ErrorKind.DEADLINE_EXCEEDED:
            return RerankError(f"{what}: no answer before the request's deadline ({tries} tries in "
                               f"{self.clock() - started:.1f}s); last error: {describe(error)}", kind=kind, status=status)
        if tries == 1 and KINDS[kind].retry is Retry.NEVER:
            return RerankError(f"{what}: {describe(error)}", kind=kind, status=status)
        return RerankError(
            f"{what}: failed after {tries} tries in {self.clock() - started:.1f}s over "
            f"{', '.join(self.urls)}; last error: {describe(error)}", kind=kind, status=status,
        )

    def _after_failure(self, url: str, retry: int, started: float, kind: ErrorKind, error: BaseException,
                       deadline: Deadline) -> float | None:
        """Seconds to sleep before the next try, or None when the request must fail now."""
        rule = KINDS[kind].retry
        if rule is Retry.NEVER:
            return None
        if rule is Retry.ELSEWHERE:
            self.mark_down(url)
        if retry + 1 >= self.policy.attempts:
            return None
        sleep = self.policy.backoff(retry + 1)
        window = self.policy.deadline
        if sleep >= deadline.remaining() or (window is not None and self.clock() + sleep - started >= window):
            return None  # the next try could not start in time: fail now, not after a sleep
        # The budget bounds what retries add to a loaded server; a try that found no server (down, restarting,
        # draining) added no work anywhere, and its retries are bounded by the attempts and the deadline.
        if rule is Retry.AFTER_WAIT and not self.budget.try_spend():
            with self._lock:
                self.stats.budget_refused += 1
            log.debug("retry budget spent: not retrying %s (%s)", url, describe(error))
            return None
        # The first retry says what the caller is waiting for; the following ones only with -v.
        log.log(logging.INFO if retry == 0 else logging.DEBUG, "%s from %s (%s); trying again (try %d of %d)",
                kind.value.replace("_", " "), url, describe(error), retry + 2, self.policy.attempts)
        return sleep

    def _start(self) -> float:
        with self._lock:
            self.stats.requests += 1
        self.budget.request()
        return self.clock()

    async def acall(self, what: str, fn: Callable[[T], Awaitable[R]], deadline: Deadline) -> R:
        """Await `fn(endpoint)` before `deadline`, retrying what the error table allows on the next endpoint."""
        started, previous = self._start(), None
        for retry in range(self.policy.attempts):
            url = self.pick(avoid=previous)
            self._record_attempt(url, retry, previous)
            try:
                result = await fn(self.endpoints[url])
            except Exception as error:  # noqa: BLE001
                kind = error_kind(error, deadline)
                sleep = self._after_failure(url, retry, started, kind, error, deadline)
                if sleep is None:
                    raise self._fail(what, retry + 1, started, error, kind) from None
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
