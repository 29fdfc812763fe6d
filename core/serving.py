"""How one deployment serves a model: batch and request limits, padding buckets, queues, scheduling — serving.json."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from .model import ModelSpec

SERVING_FILENAME = "serving.json"


@dataclass(frozen=True)
class SubBatchCost:
    """Estimated seconds of one scorer execution of `rows` rows padded to `length` tokens: a fixed part per
    execution, a part per padded token (projections, MLP) and a part per attention cell (rows x length^2).

    Written by `repo` from the target's rates and the model's FLOPs (core/cost.py); a deployment can
    put its own measured coefficients in serving.json (`mxbai-triton perf cost` fits them).
    """

    seconds_per_execution: float
    seconds_per_token: float
    seconds_per_attention_cell: float

    def seconds(self, rows, length):
        """The estimate for `rows` x `length` (numbers or numpy arrays)."""
        return self.seconds_per_execution + rows * length * (self.seconds_per_token + length * self.seconds_per_attention_cell)

    def rows_within(self, budget: float, length: int) -> int:
        """Most rows of `length` tokens whose execution stays within `budget` seconds; at least one (a row is never split)."""
        per_row = length * (self.seconds_per_token + length * self.seconds_per_attention_cell)
        return max(1, int((budget - self.seconds_per_execution) / per_row)) if per_row > 0 else 1 << 30


@dataclass(frozen=True)
class ServingLimits:
    """Written by `repo` beside each python model of a repository; read by the tokenizer and scorer steps."""

    # Largest batch one scorer execution takes (rows of possibly several requests). Every TensorRT
    # profile covers it at its longest sequence: 48 x 8272 keeps base-v2's largest tensor (the MLP's
    # rows x seq x 4864) under 2^31 elements and its activations within one instance's share of an
    # 80 GB GPU (core/memory.py; tests/test_memory.py).
    max_batch_size: int = 48
    # Documents one request may carry; the dispatch cuts them into sub-batches for the scorer.
    # NIM's reranker takes 1000 passages per request too; the client splits longer lists.
    max_documents_per_request: int = 1000
    # Token budget of one sub-batch (rows x padded length); at least one longest sequence.
    max_batch_tokens: int = 32768
    # Attention cells (rows x padded length^2) of one sub-batch, 0 for no cap: the portable CPU
    # scorer's unfused attention materialises them per head.
    max_attention_cells: int = 0
    # What one more sub-batch costs, in padded tokens: the dispatch merges neighbouring lengths
    # when padding them costs less than an extra execution (BLS hop, kernel launches).
    sub_batch_overhead_tokens: int = 256
    # The tokenizer pads each sub-batch to the smallest bucket that fits it, so that sub-batches of
    # concurrent requests merge in the scorer's dynamic batcher; ~1.5x spacing bounds padding waste
    # to a third of the tokens. The model's longest sequence is always the last bucket. Empty: pad
    # to a multiple of the model's pad_to_multiple_of, as the reference does.
    bucket_bounds: tuple[int, ...] = (64, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144)
    # Scorer dynamic batching: wait up to this long for same-bucket requests to merge. One GPU
    # execution of a full batch takes tens of ms, so 2 ms costs little and lets concurrent requests
    # share an execution.
    queue_delay_us: int = 2000
    # Longest a request waits in the tokenizer's queue before Triton rejects it; a request's own
    # `timeout` shortens it (Triton applies an override only below a non-zero default: core
    # src/scheduler_utils.cc PolicyQueue::Enqueue), and the dispatch sends no sub-batch after it.
    # The scorer's queue has no policy (model_repository/configs.py says why): the dispatch bounds it.
    queue_timeout_us: int = 60_000_000
    # Requests dispatching at once (one per instance: a non-decoupled python model runs one execute
    # at a time). Bulk requests hold theirs for their whole run; the spare ones keep small requests
    # from waiting behind them. Each instance is a process of ~200 MB with the tokenizer loaded.
    tokenizer_instances: int = 4
    # Admission bound in front of the dispatch, for every caller (the gateway and direct gRPC/HTTP
    # clients alike): requests waiting for a tokenizer instance, per Triton priority level. Beyond it
    # Triton refuses a request at once ("Exceeds maximum queue size", UNAVAILABLE), which clients read
    # as overloaded (core/errors.py). Four rounds of the instances for interactive requests, one for
    # bulk work (docs/operations.md "Admission").
    interactive_queue_size: int = 16
    bulk_queue_size: int = 4
    # Fair scheduling (docs/scheduling.md). A request whose sub-batches add up to
    # more padded tokens than this, or whose caller marks it bulk, is bulk work: it keeps only
    # `bulk_sub_batches_in_flight` sub-batches in the scorer's queue at a time, so the queue serves
    # the active requests round-robin and a small request waits behind at most that many of them.
    # Smaller requests send every sub-batch at once.
    interactive_max_tokens: int = 65536
    bulk_sub_batches_in_flight: int = 1
    # Bounded turns (docs/scheduling.md): a bulk request's sub-batches are planned so that each one's
    # estimated execution (`sub_batch_cost`) stays within this many seconds, so a small request waits
    # behind at most about that much; interactive plans keep the limits above. 0: bulk plans like
    # interactive ones. None (and a None cost): `repo` writes its target's values (core/cost.py).
    bulk_sub_batch_seconds: float | None = None
    sub_batch_cost: SubBatchCost | None = None
    # Special-token strings inside queries and documents ("<|im_end|>", "<|im_start|>assistant"):
    # "parse" tokenizes them as special tokens, as the reference does (same tokens, same scores);
    # "text" tokenizes them as plain text, so untrusted text cannot imitate the prompt's template
    # around it (scores then differ from the reference for exactly those texts). The template's own
    # special tokens are unchanged either way.
    special_tokens_in_text: str = "parse"
    # What the scorer takes as input_ids and attention_mask (an engine's binding type can differ from
    # the export's): the tokenizer sends this dtype.
    scorer_input_dtype: str = "int64"

    def __post_init__(self):
        if self.special_tokens_in_text not in ("parse", "text"):
            raise ValueError(f"special_tokens_in_text must be 'parse' or 'text', got {self.special_tokens_in_text!r}")
        if self.bulk_sub_batch_seconds is not None and self.bulk_sub_batch_seconds < 0:
            raise ValueError(f"bulk_sub_batch_seconds must be >= 0 (0: off), got {self.bulk_sub_batch_seconds}")
        if min(self.max_documents_per_request, self.max_batch_size, self.bulk_sub_batches_in_flight,
               self.tokenizer_instances, self.interactive_queue_size, self.bulk_queue_size) < 1:
            raise ValueError("max_documents_per_request, max_batch_size, bulk_sub_batches_in_flight, "
                             "tokenizer_instances, interactive_queue_size and bulk_queue_size must be >= 1")

    @classmethod
    def for_model(cls, model: ModelSpec, **changes) -> "ServingLimits":
        """The defaults for `model` (large-v2 takes half the rows: ~3x the work per row), with `changes`."""
        return cls(**{**_MODEL_DEFAULTS.get(model.name, {}), **changes}).checked(model)

    def checked(self, model: ModelSpec) -> "ServingLimits":
        """Itself, when a sub-batch can hold the model's longest sequence; ValueError otherwise."""
        if self.max_batch_tokens < model.max_sequence_length:
            raise ValueError(f"max_batch_tokens {self.max_batch_tokens} cannot hold one sequence of "
                             f"{model.max_sequence_length} tokens")
        return self

    def seq_buckets(self, model: ModelSpec) -> tuple[int, ...]:
        """Padded sequence lengths the tokenizer emits, ascending; empty for multiple-of padding."""
        if not self.bucket_bounds:
            return ()
        top = model.max_sequence_length
        return tuple(b for b in self.bucket_bounds if b < top) + (top,)

    @property
    def preferred_batch_sizes(self) -> tuple[int, ...]:
        """Batch sizes the dynamic batcher fires at without waiting out the queue delay."""
        return tuple(sorted({max(1, self.max_batch_size // 2), self.max_batch_size}))

    def with_overrides(self, **changes) -> "ServingLimits":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / SERVING_FILENAME
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "ServingLimits":
        raw = json.loads((Path(directory) / SERVING_FILENAME).read_text(encoding="utf-8"))
        raw["bucket_bounds"] = tuple(raw["bucket_bounds"])
        # Written by earlier versions for the scorer's queue, which the dispatch now bounds; the
        # tokenizer's bounds are the per-level queue sizes. A repository built before still loads.
        raw.pop("max_queue_size", None)
        if raw.get("sub_batch_cost") is not None:
            raw["sub_batch_cost"] = SubBatchCost(**raw["sub_batch_cost"])
        return cls(**raw)


_MODEL_DEFAULTS = {
    # Same work per row as base costs ~3x; 24 x 8272 x 8960 stays under 2^31 elements.
    "mxbai-rerank-large-v2": {"max_batch_size": 24, "max_batch_tokens": 16384},
}
