"""Length-aware dispatch: a request's rows ordered by length, cut into sub-batches padded to their own longest row,
and how many of them a request keeps in the scorer's queue at once (fair scheduling)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import ModelSpec
from .preprocess import padded_lengths
from .serving import ServingLimits, SubBatchCost
from .wire import PRIORITIES, PRIORITY_BULK, PRIORITY_INTERACTIVE, PRIORITY_PARAMETER


@dataclass(frozen=True)
class DispatchLimits:
    """What bounds one sub-batch, and how a sub-batch's rows are padded."""

    max_rows: int
    max_tokens: int
    max_attention_cells: int  # 0: no cap
    overhead_tokens: int
    multiple_of: int
    buckets: tuple[int, ...]  # empty: pad to a multiple of `multiple_of`
    # Bulk plans: a sub-batch's estimated execution stays within `budget_seconds` (0: no budget).
    cost: SubBatchCost | None = None
    budget_seconds: float = 0.0

    def __post_init__(self):
        if self.budget_seconds and self.cost is None:
            raise ValueError("a sub-batch budget needs a cost model (serving.json's sub_batch_cost)")

    @classmethod
    def of(cls, model: ModelSpec, limits: ServingLimits, level: int = PRIORITY_INTERACTIVE) -> "DispatchLimits":
        """The limits of `level`'s plans: bulk ones add the cost budget where serving.json sets one."""
        bounded = level == PRIORITY_BULK and limits.sub_batch_cost is not None and bool(limits.bulk_sub_batch_seconds)
        return cls(
            max_rows=limits.max_batch_size, max_tokens=limits.max_batch_tokens,
            max_attention_cells=limits.max_attention_cells, overhead_tokens=limits.sub_batch_overhead_tokens,
            multiple_of=model.pad_to_multiple_of, buckets=limits.seq_buckets(model),
            cost=limits.sub_batch_cost if bounded else None, budget_seconds=limits.bulk_sub_batch_seconds if bounded else 0.0,
        )

    def padded(self, lengths: np.ndarray) -> np.ndarray:
        """Padded length of a sub-batch whose longest row has each of `lengths` tokens."""
        return padded_lengths(lengths, multiple_of=self.multiple_of, buckets=self.buckets)

    def rows_at(self, padded_length: int) -> int:
        """Most rows one sub-batch of `padded_length` may hold (at least one)."""
        rows = min(self.max_rows, self.max_tokens // padded_length)
        if self.max_attention_cells:
            rows = min(rows, self.max_attention_cells // (padded_length * padded_length))
        if self.budget_seconds:
            rows = min(rows, self.cost.rows_within(self.budget_seconds, padded_length))
        return max(1, rows)

    def padded_tokens(self, lengths: np.ndarray, batches: list[np.ndarray]) -> int:
        """Tokens the scorer computes for `batches` of rows of `lengths`: each sub-batch's rows x its padded length."""
        return sum(len(rows) * int(self.padded(lengths[rows].max(keepdims=True))[0]) for rows in batches)


def plan_sub_batches(lengths: np.ndarray, limits: DispatchLimits) -> list[np.ndarray]:
    """Row indices of each sub-batch, shortest rows first.

    Rows are sorted by length; a dynamic programme over the sorted order picks the cuts that
    minimise padded tokens plus `overhead_tokens` per sub-batch, within the row, token and
    attention-cell limits. A sub-batch holds consecutive rows of the order, so it pads only to its
    own longest row: an 8k-token outlier is a sub-batch of its own, not every row's length.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    padded = limits.padded(lengths[order])
    n = len(order)
    cost = np.zeros(n + 1)
    cut = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        width = int(padded[end - 1])  # the longest row of any sub-batch ending here
        start = max(0, end - limits.rows_at(width))
        candidates = cost[start:end] + (end - np.arange(start, end)) * width
        best = int(np.argmin(candidates))
        cost[end] = candidates[best] + limits.overhead_tokens
        cut[end] = start + best
    batches, end = [], n
    while end > 0:
        batches.append(order[cut[end]:end])
        end = int(cut[end])
    return batches[::-1]


@dataclass(frozen=True)
class SchedulingPolicy:
    """Which requests are bulk work, and how many sub-batches each kind keeps in the scorer's queue.

    Triton's scorer queue is first come, first served. A bulk request keeps only `bulk_in_flight`
    sub-batches in it, sending the next when one is answered, so the queue serves the active
    requests in turn: a small request sent during a 1000-document one waits behind at most that
    many executions, and the bulk request still gets its turn after every small one (no starvation).
    """

    interactive_max_tokens: int
    bulk_in_flight: int

    @classmethod
    def of(cls, limits: ServingLimits) -> "SchedulingPolicy":
        return cls(interactive_max_tokens=limits.interactive_max_tokens, bulk_in_flight=limits.bulk_sub_batches_in_flight)

    def level(self, padded_tokens: int, requested: int = 0) -> int:
        """PRIORITY_BULK for large requests and for those whose caller asks for it, else PRIORITY_INTERACTIVE.

        A caller can lower its request's level, never raise it: a 1000-document request marked
        interactive is still bulk work.
        """
        if requested >= PRIORITY_BULK or padded_tokens > self.interactive_max_tokens:
            return PRIORITY_BULK
        return PRIORITY_INTERACTIVE

    def in_flight(self, level: int, sub_batches: int) -> int:
        """Sub-batches a request of `level` may have in the scorer's queue at once."""
        return sub_batches if level == PRIORITY_INTERACTIVE else min(self.bulk_in_flight, sub_batches)


LEVEL_NAMES = {PRIORITY_INTERACTIVE: "interactive", PRIORITY_BULK: "bulk"}

# Counters the tokenizer step publishes on Triton's metrics port, label `model` (and `class`, the
# level's name, or `reason` for skipped sub-batches); read back by metrics_port.read_counters.
COUNTERS = {
    "mxbai_dispatch_documents": "documents dispatched to the scorer",
    "mxbai_dispatch_sub_batches": "scorer requests (sub-batches) sent",
    "mxbai_dispatch_real_tokens": "prompt tokens of the dispatched documents",
    "mxbai_dispatch_padded_tokens": "tokens the scorer computes: rows x padded length",
    "mxbai_dispatch_requests": "requests dispatched, by class (interactive or bulk)",
    "mxbai_dispatch_request_seconds": "seconds from a request's dispatch to its last answer, by class",
    "mxbai_dispatch_sub_batch_seconds": "seconds from sending a sub-batch to its answer (scorer queue + execution), by class",
    "mxbai_dispatch_skipped_sub_batches": "sub-batches never sent, by reason (cancelled, deadline, failed)",
}


def requested_level(parameters: dict) -> int:
    """The caller's level from the request's parameters (0 when it names none).

    Raises:
        ValueError: naming the parameter when it is not 0, 1 or 2.
    """
    value = parameters.get(PRIORITY_PARAMETER, 0)
    if isinstance(value, bool) or value not in PRIORITIES:
        raise ValueError(f"parameter '{PRIORITY_PARAMETER}' must be 0 (by size), {PRIORITY_INTERACTIVE} (interactive) "
                         f"or {PRIORITY_BULK} (bulk), got {value!r}")
    return int(value)
