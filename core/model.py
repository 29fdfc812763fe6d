"""One typed spec per model — what it is: the single source of model facts that every stage reads."""

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
    """What a reranker is, apart from its weights: identity, prompt template, token ids, tensors, graph.

    Written by `export` (spec.json) and copied as is into a repository; how a deployment serves the
    model is core.serving.ServingLimits, how an engine is built core.engine.EngineProfiles.
    """

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
    # Graph dtype of the exported scorer ("fp32", "fp16" or "bf16"); inputs and output stay as below.
    dtype: str = "fp32"
    input_ids: TensorSpec = TensorSpec("input_ids", "int64", (-1,))
    attention_mask: TensorSpec = TensorSpec("attention_mask", "int64", (-1,))
    scores: TensorSpec = TensorSpec("scores", "float32", (1,))
    # Where the scorer graph wants pads: "right" for the fused-attention graph (export/scorer.py).
    padding_side: str = "right"

    def __post_init__(self):
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")

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
        if "padding_side" not in raw:
            raise ValueError("this spec.json names no padding_side: it comes from an export made before the graph took "
                             "right-padded rows; export the model again")
        # Exports before 0.2 also wrote serving limits and TensorRT profiles here; the repository and the
        # engine own those now (serving.json, engine.json): an older export's copies are not read.
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in raw.items() if key in known})

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
LARGE_V2 = ModelSpec(name="mxbai-rerank-large-v2", source="mixedbread-ai/mxbai-rerank-large-v2", estimated_max=12.0)
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
