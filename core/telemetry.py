"""What a request's answer says about its time (the `timings` output, TEI's headers), and the histogram buckets
every stage shares; pure functions, no Triton and no web stack."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from .model import TensorSpec

# Third output of the ensemble (additive to query, documents, instruction -> scores, token_counts):
# the dispatch's figures for the request, microseconds, in TIMING_FIELDS order.
TIMINGS = TensorSpec("timings", "int64", (4,))
TIMING_FIELDS = ("tokenization", "queue", "inference", "dispatch")
# Extra output of a scorer that reports its own execution (the python scorer): monotonic-clock nanoseconds
# at the start and end of the execution that held the row. Native scorers have none; the dispatch then
# counts each sub-batch's round trip as its execution.
EXECUTION = TensorSpec("execution_ns", "int64", (2,))

# Seconds, 0.5 ms to 2 min: a GPU sub-batch (milliseconds) and a CPU request of 100 documents (seconds)
# both land in buckets of their own scale.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# Prompt tokens of one request: one short document to 1000 documents of 8k tokens.
TOKEN_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 8388608)

# TEI's answer headers (text-embeddings-inference router/src/lib.rs): integer milliseconds, truncated.
TOTAL_HEADER, TOKENIZATION_HEADER, QUEUE_HEADER, INFERENCE_HEADER = (
    "x-total-time", "x-tokenization-time", "x-queue-time", "x-inference-time")
COMPUTE_TOKENS_HEADER = "x-compute-tokens"
REQUEST_ID_HEADER = "x-request-id"
TIMING_HEADERS = (TOTAL_HEADER, TOKENIZATION_HEADER, QUEUE_HEADER, INFERENCE_HEADER, COMPUTE_TOKENS_HEADER)
# Triton's own prefix for a request's messages (core infer_request.h LogRequest); the dispatch uses it too.
_ID_PREFIX = re.compile(r"\[request id: [^\]]*\] ")


@dataclass(frozen=True)
class Timings:
    """Seconds of one request, where they were spent.

    `tokenization`: decoding and tokenizing it (the tokenizer call of its execution). `dispatch`: from
    the first sub-batch ready to the last answer. `inference`: the part of `dispatch` during which at
    least one of its sub-batches was executing in the scorer. `queue`: the rest of `dispatch` (waiting
    for a slot, in the scorer's queue, the hops). `total`: what the caller waited, on its own clock (0
    until a client sets it). So total >= tokenization + queue + inference.
    """

    tokenization: float = 0.0
    queue: float = 0.0
    inference: float = 0.0
    dispatch: float = 0.0
    total: float = 0.0

    def to_array(self) -> np.ndarray:
        """The `timings` output: microseconds in TIMING_FIELDS order."""
        return np.array([round(getattr(self, f) * 1e6) for f in TIMING_FIELDS], dtype=np.int64)

    @classmethod
    def from_array(cls, values) -> "Timings":
        return cls(*(float(v) / 1e6 for v in np.asarray(values).reshape(-1)[:len(TIMING_FIELDS)]))

    def with_total(self, seconds: float) -> "Timings":
        return replace(self, total=seconds)

    @property
    def server(self) -> float:
        """Seconds the dispatch step worked on the request: tokenization, then its dispatch."""
        return self.tokenization + self.dispatch

    def headers(self, compute_tokens: int) -> dict[str, str]:
        """TEI's timing headers (integer ms) and W3C Server-Timing (ms with µs), for an HTTP answer."""
        ms = {name: value * 1e3 for name, value in (("total", self.total), ("tokenization", self.tokenization),
                                                     ("queue", self.queue), ("inference", self.inference))}
        return {
            TOTAL_HEADER: str(int(ms["total"])), TOKENIZATION_HEADER: str(int(ms["tokenization"])),
            QUEUE_HEADER: str(int(ms["queue"])), INFERENCE_HEADER: str(int(ms["inference"])),
            COMPUTE_TOKENS_HEADER: str(compute_tokens),
            "server-timing": ", ".join(f"{name};dur={value:.3f}" for name, value in ms.items()),
        }


def slowest(parts: Iterable[Timings]) -> Timings:
    """The figures of the call that took the dispatch longest: what a caller of several concurrent calls waited on."""
    return max(parts, key=lambda t: t.server, default=Timings())


def busy_seconds(intervals: Iterable[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals: time during which at least one of them was running."""
    total, reach = 0.0, -np.inf
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def with_request_id(request_id: str, message: str) -> str:
    """`message` as Triton writes a request's messages: "[request id: X] message" (unchanged without an id)."""
    return f"[request id: {request_id}] {message}" if request_id else message


def without_request_id(message: str) -> str:
    """`message` without the request-id prefix with_request_id (or Triton) put in it."""
    return _ID_PREFIX.sub("", message, count=1)
