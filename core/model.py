"""One typed spec per model: the single source that export, repository, client and perf read."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

SPEC_FILENAME = "spec.json"
ONNX_FILENAME = "model.onnx"
# torch writes the weights beside the graph under this name when external data is on.
ONNX_DATA_FILENAME = ONNX_FILENAME + ".data"


@dataclass(frozen=True)
class PromptTemplate:
    """The reference prompt pieces, byte for byte as in mxbai-rerank 0.1.6 `MxbaiRerankV2`."""

    prefix: str = (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
        "<|im_end|>\n<|im_start|>user\n"
    )
    suffix: str = "<|im_end|>\n<|im_start|>assistant\n"
    sep: str = "\n"
    instruction: str = "instruction: {instruction}"
    query: str = "query: {query}"
    document: str = "document: {document}"
    task: str = (
        "You are a search relevance expert who evaluates how well documents match search queries. "
        "For each query-document pair, carefully analyze the semantic relationship between them, "
        "then provide your binary relevance judgment (0 for not relevant, 1 for relevant).\nRelevance:"
    )


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor without its batch dimension; -1 marks a dynamic dimension."""

    name: str
    dtype: str  # numpy spelling: "int64", "float32", "object" (BYTES)
    dims: tuple[int, ...]


# Second output of the ensemble: each document's prompt tokens after truncation (usage reporting).
TOKEN_COUNTS = TensorSpec("token_counts", "int32", (1,))


@dataclass(frozen=True)
class ModelSpec:
    """Everything about one reranker that is not weights."""

    name: str
    source: str
    estimated_max: float = 12.0
    max_length: int = 8192
    model_max_length: int = 32768
    yes_token: str = "1"
    no_token: str = "0"
    yes_token_id: int = 16
    no_token_id: int = 15
    pad_token_id: int = 151643
    pad_to_multiple_of: int = 8
    template: PromptTemplate = field(default_factory=PromptTemplate)
    # Special-token strings inside queries and documents ("<|im_end|>", "<|im_start|>assistant"):
    # "parse" tokenizes them as special tokens, as the reference does (same tokens, same scores);
    # "text" tokenizes them as plain text, so untrusted text cannot imitate the prompt's template
    # around it (scores then differ from the reference for exactly those texts). The template's own
    # special tokens are unchanged either way.
    special_tokens_in_text: str = "parse"
    # Graph dtype of the exported scorer ("fp32" or "fp16"); inputs and output stay as below.
    dtype: str = "fp32"
    input_ids: TensorSpec = TensorSpec("input_ids", "int64", (-1,))
    attention_mask: TensorSpec = TensorSpec("attention_mask", "int64", (-1,))
    scores: TensorSpec = TensorSpec("scores", "float32", (1,))
    # Largest batch one scorer execution takes (rows of possibly several requests). Every TensorRT
    # profile covers it at its longest sequence: 48 x 8272 keeps base-v2's largest tensor (the MLP's
    # rows x seq x 4864) under 2^31 elements and its activations within one instance's share of an
    # 80 GB GPU (export/memory.py; tests/test_memory.py).
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
    # Where the scorer graph wants pads: "right" for the fused-attention graph (export/scorer.py);
    # exports written before it have no such field and a left-padded graph (see from_json).
    padding_side: str = "right"
    # Scorer dynamic batching: wait up to this long for same-bucket requests to merge. One GPU
    # execution of a full batch takes tens of ms, so 2 ms costs little and lets concurrent requests
    # share an execution; a bounded queue rejects overload instead of growing without limit.
    queue_delay_us: int = 2000
    max_queue_size: int = 512
    # Longest a request waits in the tokenizer's queue, or a sub-batch in the scorer's, before Triton
    # rejects it; a request's own `timeout` shortens both (Triton applies an override only below a
    # non-zero default: core src/scheduler_utils.cc PolicyQueue::Enqueue).
    queue_timeout_us: int = 60_000_000
    # Requests dispatching at once (one per instance: a non-decoupled python model runs one execute
    # at a time). Bulk requests hold theirs for their whole run; the spare ones keep small requests
    # from waiting behind them. Each instance is a process of ~200 MB with the tokenizer loaded.
    tokenizer_instances: int = 4
    # Fair scheduling (README "Scheduling and cancellation"). A request whose sub-batches add up to
    # more padded tokens than this, or whose caller marks it bulk, is bulk work: it keeps only
    # `bulk_sub_batches_in_flight` sub-batches in the scorer's queue at a time, so the queue serves
    # the active requests round-robin and a small request waits behind at most that many of them.
    # Smaller requests send every sub-batch at once.
    interactive_max_tokens: int = 65536
    bulk_sub_batches_in_flight: int = 1
    # Tokenizer pads each request to the smallest bucket that fits it, so that requests merge in the
    # scorer's dynamic batcher; ~1.5x spacing bounds padding waste to a third of the tokens.
    # The longest possible sequence (max_sequence_length) is always the last bucket. Empty: pad to
    # a multiple of pad_to_multiple_of, as the reference does (least padding, fewest merges).
    bucket_bounds: tuple[int, ...] = (64, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144)
    # TensorRT optimization profiles as (upper bound, opt) of sequence length; each profile starts
    # where the previous ends and covers batch 1..max_batch_size. Bounds are tokenizer buckets, the
    # last one is max_sequence_length.
    trt_profile_bounds: tuple[tuple[int, int], ...] = ((256, 256), (1024, 512), (-1, 2048))

    def __post_init__(self):
        if self.special_tokens_in_text not in ("parse", "text"):
            raise ValueError(f"special_tokens_in_text must be 'parse' or 'text', got {self.special_tokens_in_text!r}")
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")
        if self.max_batch_tokens < self.max_sequence_length:
            raise ValueError(f"max_batch_tokens {self.max_batch_tokens} cannot hold one sequence of "
                             f"{self.max_sequence_length} tokens")
        if self.max_documents_per_request < 1 or self.max_batch_size < 1:
            raise ValueError("max_documents_per_request and max_batch_size must be >= 1")
        if self.bulk_sub_batches_in_flight < 1 or self.tokenizer_instances < 1:
            raise ValueError("bulk_sub_batches_in_flight and tokenizer_instances must be >= 1")

    @property
    def predefined_length_hint(self) -> int:
        """Template tokens for the Qwen2.5 tokenizer (79, measured); the tokenizer recomputes it."""
        return 79

    @property
    def max_sequence_length(self) -> int:
        """Longest padded sequence the tokenizer can produce (max_length + template, multiple of 8)."""
        longest = min(self.max_length + self.predefined_length_hint, self.model_max_length)
        return -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of

    @property
    def seq_buckets(self) -> tuple[int, ...]:
        """Padded sequence lengths the tokenizer emits, ascending; empty for multiple-of padding."""
        if not self.bucket_bounds:
            return ()
        top = self.max_sequence_length
        return tuple(b for b in self.bucket_bounds if b < top) + (top,)

    @property
    def trt_profiles(self) -> tuple[tuple[int, int, int], ...]:
        """(min, opt, max) sequence lengths of each TensorRT optimization profile."""
        profiles, low, top = [], 1, self.max_sequence_length
        for bound, opt in self.trt_profile_bounds:
            high = top if bound < 0 else min(bound, top)
            if low > high:
                break
            profiles.append((low, min(max(opt, low), high), high))
            low = high + 1
        return tuple(profiles)

    @property
    def preferred_batch_sizes(self) -> tuple[int, ...]:
        """Batch sizes the dynamic batcher fires at without waiting out the queue delay."""
        return tuple(sorted({max(1, self.max_batch_size // 2), self.max_batch_size}))

    @property
    def triton_name(self) -> str:
        """A Triton model name derived from the spec name: lowercase letters, digits, '-', '_'."""
        return re.sub(r"[^a-z0-9_-]+", "-", self.name.lower()).strip("-") or "reranker"

    def with_overrides(self, **changes) -> "ModelSpec":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        raw = json.loads(text)
        raw["template"] = PromptTemplate(**raw["template"])
        for key in ("input_ids", "attention_mask", "scores"):
            t = raw[key]
            raw[key] = TensorSpec(t["name"], t["dtype"], tuple(t["dims"]))
        raw["bucket_bounds"] = tuple(raw["bucket_bounds"])
        raw["trt_profile_bounds"] = tuple(tuple(p) for p in raw["trt_profile_bounds"])
        if "padding_side" not in raw:
            raise ValueError("this spec.json names no padding_side: it comes from an export made before the graph took "
                             "right-padded rows; export the model again")
        return cls(**raw)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / SPEC_FILENAME
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "ModelSpec":
        return cls.from_json((Path(directory) / SPEC_FILENAME).read_text(encoding="utf-8"))


BASE_V2 = ModelSpec(
    name="mxbai-rerank-base-v2", source="mixedbread-ai/mxbai-rerank-base-v2", estimated_max=9.0
)
LARGE_V2 = ModelSpec(
    name="mxbai-rerank-large-v2",
    source="mixedbread-ai/mxbai-rerank-large-v2",
    estimated_max=12.0,
    # Same work per row as base costs ~3x; 24 x 8272 x 8960 stays under 2^31 elements.
    max_batch_size=24,
    max_batch_tokens=16384,
)
KNOWN_MODELS: dict[str, ModelSpec] = {
    "base-v2": BASE_V2,
    "large-v2": LARGE_V2,
    BASE_V2.source: BASE_V2,
    LARGE_V2.source: LARGE_V2,
}


def resolve_spec(model: str, *, name: str | None = None) -> ModelSpec:
    """Spec for a short name, a hub id or a local checkpoint directory.

    Args:
        model: "base-v2", "large-v2", a Hugging Face id, or a local directory.
        name: Optional override of the spec's model name.

    Returns:
        The spec. For a local directory, model_max_length comes from its config.json, and
        estimated_max is 12.0, as the reference does for any id it does not know.
    """
    if model in KNOWN_MODELS:
        spec = KNOWN_MODELS[model]
    else:
        path = Path(model)
        if path.is_dir():
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            spec = ModelSpec(
                name=path.resolve().name,
                source=str(path.resolve()),
                model_max_length=int(config.get("max_position_embeddings", 32768)),
            )
        elif "/" in model:
            spec = ModelSpec(name=model.split("/")[-1], source=model)
        else:
            raise ValueError(
                f"unknown model {model!r}: use base-v2, large-v2, a Hugging Face id or a local directory"
            )
    return spec.with_overrides(name=name) if name else spec
