"""Length-aware dispatch: a request's rows ordered by length, cut into sub-batches padded to their own longest row."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mxbai_triton.export.preprocess import padded_lengths
from mxbai_triton.export.spec import ModelSpec


@dataclass(frozen=True)
class DispatchLimits:
    """What bounds one sub-batch, and how a sub-batch's rows are padded."""

    max_rows: int
    max_tokens: int
    max_attention_cells: int  # 0: no cap
    overhead_tokens: int
    multiple_of: int
    buckets: tuple[int, ...]  # empty: pad to a multiple of `multiple_of`

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> "DispatchLimits":
        return cls(
            max_rows=spec.max_batch_size, max_tokens=spec.max_batch_tokens,
            max_attention_cells=spec.max_attention_cells, overhead_tokens=spec.sub_batch_overhead_tokens,
            multiple_of=spec.pad_to_multiple_of, buckets=spec.seq_buckets,
        )

    def padded(self, lengths: np.ndarray) -> np.ndarray:
        """Padded length of a sub-batch whose longest row has each of `lengths` tokens."""
        return padded_lengths(lengths, multiple_of=self.multiple_of, buckets=self.buckets)

    def rows_at(self, padded_length: int) -> int:
        """Most rows one sub-batch of `padded_length` may hold (at least one)."""
        rows = min(self.max_rows, self.max_tokens // padded_length)
        if self.max_attention_cells:
            rows = min(rows, self.max_attention_cells // (padded_length * padded_length))
        return max(1, rows)


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
