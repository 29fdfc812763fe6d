"""What the gateway bounds before any work: request bodies (size, time, bytes held at once), prompt tokens per
request, and each caller's rate of requests and tokens."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from mxbai_triton.core.errors import ErrorKind

from .errors import APIError

MIB = 1 << 20
# The prompt template's own tokens (79 in the reference's) are at most this many.
TEMPLATE_TOKENS_BOUND = 128
# Callers remembered by the rate limiter before those with a full allowance (idle ones) are forgotten.
_CALLERS_KEPT = 4096


@dataclass(frozen=True)
class GuardSettings:
    """Limits on what one request may bring and cost, and on what each caller may ask per second.

    Args:
        max_body_bytes: Largest request body; a longer one is refused (413) once that many bytes arrived.
        body_timeout: Seconds a client has to send the whole body once its headers are in (then 408).
        buffered_bytes: Request bytes all requests together may hold at once (then 503, retry shortly).
        max_request_tokens: Largest bound on a request's prompt tokens (413); 0: the ensemble's own bound
            (max_documents_per_request x max_prompt_tokens).
        rate_requests: Requests per second per caller (API key, else client address); 0: no limit.
        rate_tokens: Prompt tokens per second per caller; 0: no limit.
    """

    max_body_bytes: int = 64 * MIB
    body_timeout: float = 30.0
    buffered_bytes: int = 128 * MIB
    max_request_tokens: int = 0
    rate_requests: float = 0.0
    rate_tokens: float = 0.0

    def __post_init__(self):
        if self.max_body_bytes <= 0 or self.buffered_bytes < self.max_body_bytes:
            raise ValueError("--api-max-body-mib must be > 0 and --api-buffered-mib at least as large")
        if self.body_timeout <= 0:
            raise ValueError("--api-body-timeout must be > 0")
        if self.max_request_tokens < 0 or self.rate_requests < 0 or self.rate_tokens < 0:
            raise ValueError("--api-max-request-tokens, --api-rate-requests and --api-rate-tokens must be >= 0 (0: off)")


class BodyBudget:
    """Request bytes held by all requests together: a request that would pass `capacity` is turned away."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.held = 0

    def claim(self) -> "BodyClaim":
        return BodyClaim(self)


class BodyClaim:
    """One request's bytes in the budget, given back when it is answered; whether its body was read whole."""

    def __init__(self, budget: BodyBudget):
        self.budget = budget
        self.bytes = 0
        self.complete = False

    def take(self, n: int) -> None:
        if self.budget.held + n > self.budget.capacity:
            raise APIError(ErrorKind.OVERLOADED, "the gateway holds as many request bodies as it may; retry shortly", retry_after=1,
                           detail=f"buffered request bytes at the limit of {self.budget.capacity}")
        self.budget.held += n
        self.bytes += n

    def release(self) -> None:
        self.budget.held -= self.bytes
        self.bytes = 0


async def read_body(receive: Callable, headers, settings: GuardSettings, claim: BodyClaim) -> bytearray:
    """The request body, refused as soon as it is known to be too long (413) or too slow (408).

    A chunked body has no declared length: it is counted while it streams, so a 200 MB body costs at
    most `max_body_bytes` of memory and is refused there. `receive` is the ASGI receive callable.
    """
    limit = settings.max_body_bytes
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise APIError(ErrorKind.TOO_LARGE, f"the body has {int(declared)} bytes, more than the limit of {limit}")
    body = bytearray()
    deadline = time.monotonic() + settings.body_timeout
    while True:
        try:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise APIError(ErrorKind.SLOW_CLIENT, f"the body did not arrive within {settings.body_timeout:g}s") from None
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        if len(body) + len(chunk) > limit:
            raise APIError(ErrorKind.TOO_LARGE, f"the body has more than {limit} bytes, the limit")
        claim.take(len(chunk))
        body += chunk
        if not message.get("more_body", False):
            claim.complete = True
            return body


class ClientGone(Exception):
    """The HTTP client disconnected before its answer was ready."""


def prompt_token_bound(query: str, documents: list[str], instruction: str | None, max_prompt_tokens: int) -> int:
    """An upper bound on the prompt tokens of a request, known before tokenizing.

    Byte-level BPE gives every token at least one byte of text, so a prompt has at most the UTF-8
    bytes of its query, instruction and document plus the template's tokens, and at most the cap.
    """
    fixed = TEMPLATE_TOKENS_BOUND + _utf8_bytes(query) + _utf8_bytes(instruction or "")
    return sum(min(max_prompt_tokens, fixed + _utf8_bytes(d)) for d in documents)


def _utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


class _Bucket:
    """A token bucket that may go into debt: a request is let in while the level is positive."""

    def __init__(self, rate: float, capacity: float, now: float):
        self.rate, self.capacity = rate, capacity
        self.level, self.stamp = capacity, now

    def refill(self, now: float) -> float:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.level

    def wait(self, need: float) -> float:
        """Seconds until the level reaches `need`."""
        return max(0.0, need - self.level) / self.rate


class RateLimiter:
    """Per caller: requests and prompt tokens per second, each in a bucket holding one second of its rate.

    A request needs one request in its caller's bucket and a positive token level. Its tokens are
    charged at their bound before scoring and settled to the real count after, so concurrent requests
    cannot all start on the same allowance, and a request larger than a second's worth runs once and
    then makes its caller wait in proportion.
    """

    def __init__(self, requests_per_s: float, tokens_per_s: float, clock: Callable[[], float] = time.monotonic):
        self.requests_per_s, self.tokens_per_s, self.clock = requests_per_s, tokens_per_s, clock
        self._requests: dict[str, _Bucket] = {}
        self._tokens: dict[str, _Bucket] = {}

    @property
    def counts_tokens(self) -> bool:
        return self.tokens_per_s > 0

    def admit(self, caller: str) -> None:
        """Take one request from `caller`'s allowance, or APIError 429 with the seconds to wait."""
        now = self.clock()
        waits = []
        if self.requests_per_s:
            bucket = self._bucket(self._requests, caller, self.requests_per_s, max(1.0, self.requests_per_s), now)
            if bucket.refill(now) < 1:
                waits.append(bucket.wait(1))
        if self.tokens_per_s:
            bucket = self._bucket(self._tokens, caller, self.tokens_per_s, self.tokens_per_s, now)
            if bucket.refill(now) <= 0:
                waits.append(bucket.wait(1))
        if waits:
            wait = max(waits)
            raise APIError(ErrorKind.RATE_LIMITED, f"rate limit reached for this caller; retry in {math.ceil(wait)}s", retry_after=wait)
        if self.requests_per_s:
            self._requests[caller].level -= 1

    def charge(self, caller: str, tokens: float) -> None:
        """Take `tokens` from `caller`'s token allowance (negative: give them back)."""
        if self.tokens_per_s:
            now = self.clock()
            bucket = self._bucket(self._tokens, caller, self.tokens_per_s, self.tokens_per_s, now)
            bucket.refill(now)
            bucket.level -= tokens

    def _bucket(self, table: dict[str, _Bucket], caller: str, rate: float, capacity: float, now: float) -> _Bucket:
        if caller not in table:
            if len(table) >= _CALLERS_KEPT:
                # A full bucket is what a new caller gets: forgetting those changes no one's allowance.
                for name in [n for n, b in table.items() if b.refill(now) >= b.capacity]:
                    del table[name]
            table[caller] = _Bucket(rate, capacity, now)
        return table[caller]


def check_documents(count: int, max_documents: int, field: str) -> None:
    """APIError too_large when a request carries more documents than the ensemble takes at once."""
    if count > max_documents:
        raise APIError(ErrorKind.TOO_LARGE, f"'{field}' has {count} items, more than the limit of {max_documents} "
                                            "per request; split the list", field)


class Allowance:
    """One request's prompt tokens against the per-request limit and its caller's token rate."""

    def __init__(self, limiter: RateLimiter, caller: str, max_request_tokens: int):
        self.limiter, self.caller, self.max_request_tokens = limiter, caller, max_request_tokens
        self.charged = 0

    def admit(self, bound: int, max_prompt_tokens: int, field: str) -> None:
        """Check the request's token bound (prompt_token_bound) against the limit (APIError too_large) and
        charge it to the caller."""
        if self.max_request_tokens and bound > self.max_request_tokens:
            raise APIError(ErrorKind.TOO_LARGE,
                           f"'{field}' may cost up to {bound} prompt tokens (each prompt counted at its UTF-8 bytes "
                           f"plus the template, at most {max_prompt_tokens}), more than the limit of "
                           f"{self.max_request_tokens} per request; split the list", field)
        self.limiter.charge(self.caller, bound)
        self.charged = bound

    def settle(self, tokens: int) -> None:
        """Replace the charged bound with the tokens the request really cost."""
        self.limiter.charge(self.caller, tokens - self.charged)
        self.charged = 0

    def release(self) -> None:
        """Give back what a request that was never scored had charged."""
        self.limiter.charge(self.caller, -self.charged)
        self.charged = 0
