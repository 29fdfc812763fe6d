"""Load shedding: the work the gateway lets run on Triton at once, per class (interactive, bulk), in requests and prompt
tokens; a request beyond it is refused at once (overloaded, Retry-After), while refusing is still cheap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mxbai_triton.core.dispatch import LEVEL_NAMES, SchedulingPolicy
from mxbai_triton.core.errors import ErrorKind
from mxbai_triton.core.serving import ServingLimits
from mxbai_triton.core.wire import PRIORITY_BULK, PRIORITY_INTERACTIVE

if TYPE_CHECKING:  # the CLI reads the defaults without loading the web stack
    from .metrics import GatewayMetrics

_DEFAULTS = ServingLimits()


@dataclass(frozen=True)
class AdmissionLimits:
    """Requests and prompt tokens (their UTF-8 bound, known before tokenizing) each class may have in flight.

    Sized from what the ensemble does at once (docs/operations.md "Admission"): the dispatch runs
    `tokenizer_instances` requests at a time (4 by default) and the scorer works through their
    sub-batches; a few requests waiting per instance keep the scorer busy (goodput) while a request
    admitted last waits behind a bounded amount of work (latency). 0 turns a bound off.

    Args:
        interactive_requests: Interactive requests in flight (4 per dispatch instance by default).
        interactive_tokens: Prompt-token bound of interactive requests in flight: 4 requests of the largest
            interactive size (ServingLimits.interactive_max_tokens, 65536) per dispatch instance.
        bulk_requests: Bulk requests in flight: one per dispatch instance but one, so that a small request
            always finds an instance.
        bulk_tokens: Prompt-token bound of bulk requests in flight.
        interactive_max_tokens: A request whose token bound is larger is bulk work (the dispatch's rule).
    """

    interactive_requests: int = 4 * _DEFAULTS.tokenizer_instances
    interactive_tokens: int = 4 * _DEFAULTS.tokenizer_instances * _DEFAULTS.interactive_max_tokens
    bulk_requests: int = max(1, _DEFAULTS.tokenizer_instances - 1)
    bulk_tokens: int = 4 * _DEFAULTS.tokenizer_instances * _DEFAULTS.interactive_max_tokens
    interactive_max_tokens: int = _DEFAULTS.interactive_max_tokens

    def __post_init__(self):
        if min(self.interactive_requests, self.interactive_tokens, self.bulk_requests, self.bulk_tokens) < 0:
            raise ValueError("--api-admit-* bounds must be >= 0 (0: off)")

    def bounds(self, level: int) -> tuple[int, int]:
        if level == PRIORITY_BULK:
            return self.bulk_requests, self.bulk_tokens
        return self.interactive_requests, self.interactive_tokens


class Ticket:
    """One admitted request's share of its class, given back once it is answered (or fails)."""

    def __init__(self, admission: "Admission", level: int, tokens: int):
        self.admission, self.level, self.tokens = admission, level, tokens

    def release(self) -> None:
        if self.admission is not None:
            self.admission._release(self)
            self.admission = None


class Admission:
    """The admission bound in front of the dispatch: counts each class's requests and token bound in flight.

    A request is admitted while its class has room in both; one larger than the whole token bound is
    admitted only when its class has nothing in flight (it runs alone rather than never). Refusals
    are counted on the metrics port by class and by the bound that refused them.
    """

    def __init__(self, limits: AdmissionLimits, metrics: GatewayMetrics, retry_after: float = 1.0):
        self.limits, self.metrics, self.retry_after = limits, metrics, retry_after
        self.policy = SchedulingPolicy(interactive_max_tokens=limits.interactive_max_tokens, bulk_in_flight=1)
        self.requests = {PRIORITY_INTERACTIVE: 0, PRIORITY_BULK: 0}
        self.tokens = {PRIORITY_INTERACTIVE: 0, PRIORITY_BULK: 0}

    def level(self, token_bound: int, requested: int) -> int:
        return self.policy.level(token_bound, requested)

    def admit(self, token_bound: int, requested: int = 0) -> Ticket:
        """A ticket for a request of `token_bound` prompt tokens at Triton priority `requested`, or APIError overloaded."""
        level = self.level(token_bound, requested)
        max_requests, max_tokens = self.limits.bounds(level)
        name = LEVEL_NAMES[level]
        if max_requests and self.requests[level] >= max_requests:
            self._refuse(name, "requests", f"{self.requests[level]} {name} requests are being scored, the bound")
        if max_tokens and self.requests[level] and self.tokens[level] + token_bound > max_tokens:
            self._refuse(name, "tokens", f"{name} requests of up to {self.tokens[level]} prompt tokens are being scored; "
                                         f"{token_bound} more would pass the bound of {max_tokens}")
        self.requests[level] += 1
        self.tokens[level] += token_bound
        self.metrics.admitted(name, self.requests[level], self.tokens[level])
        return Ticket(self, level, token_bound)

    def _refuse(self, name: str, bound: str, detail: str) -> None:
        from .errors import APIError

        self.metrics.shed(name, bound)
        raise APIError(ErrorKind.OVERLOADED, f"the server is at its admission bound for {name} requests; retry shortly",
                       detail=detail, retry_after=self.retry_after)

    def _release(self, ticket: Ticket) -> None:
        self.requests[ticket.level] -= 1
        self.tokens[ticket.level] -= ticket.tokens
        self.metrics.admitted(LEVEL_NAMES[ticket.level], self.requests[ticket.level], self.tokens[ticket.level])
