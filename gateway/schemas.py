"""Request bodies of the rerank APIs (Cohere v2, Jina/vLLM, TEI, NVIDIA NIM); unknown fields are ignored, as SDKs send extras."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mxbai_triton.core.wire import PRIORITY_BULK

# Cohere's field, in every API: lower is sooner, 0 (the default) the highest. Any value >= 1 marks the
# request bulk work, served a few sub-batches at a time after interactive requests (README "Scheduling").
PRIORITY_FIELD = Field(default=None, ge=0, description="0 (default): interactive or bulk by size; >= 1: bulk work")


def triton_priority(priority: int | None) -> int:
    """Triton's request priority for a body's `priority`: 0 lets the server decide by size, bulk otherwise."""
    return PRIORITY_BULK if priority else 0


class _Request(BaseModel):
    # SDKs send fields we have no use for (Cohere's `rank_fields`): ignore, do not refuse.
    model_config = ConfigDict(extra="ignore")

    query: str
    # Extension of every schema: the reference's instruction line (MxbaiRerankV2 `instruction`).
    instruction: str | None = None
    priority: int | None = PRIORITY_FIELD


class TextDocument(BaseModel):
    text: str


def _texts(documents: list[str | TextDocument]) -> list[str]:
    return [d if isinstance(d, str) else d.text for d in documents]


class CohereV2Request(_Request):
    """Cohere v2 `POST /v2/rerank` (LiteLLM may pass documents as {"text": ...}; older clients ask for them back).

    As in Cohere's own API, `model` is required and `documents` must not be empty (the SDKs send both);
    the Jina/vLLM, TEI and NIM bodies may leave `model` out (the first served ensemble answers).
    """

    model: str
    documents: list[str | TextDocument] = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = False
    # Accepted for compatibility; documents are truncated as the reference truncates them (README).
    max_tokens_per_doc: int | None = Field(default=None, ge=1)

    def texts(self) -> list[str]:
        return _texts(self.documents)


class JinaRequest(_Request):
    """Jina / vLLM / Cohere v1 `POST /v1/rerank`: documents as strings or {"text": ...}."""

    model: str | None = None
    documents: list[str | TextDocument]
    # vLLM's default 0 means "all of them".
    top_n: int | None = Field(default=None, ge=0)
    return_documents: bool = True

    @field_validator("top_n")
    @classmethod
    def _zero_is_all(cls, value: int | None) -> int | None:
        return value or None

    def texts(self) -> list[str]:
        return _texts(self.documents)


class TEIRequest(_Request):
    """text-embeddings-inference `POST /rerank`."""

    model: str | None = None
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False
    # Accepted for compatibility; documents are truncated as the reference truncates them (README).
    truncate: bool | None = None
    truncation_direction: Literal["right", "Right"] = "right"


class NIMRankingRequest(BaseModel):
    """NVIDIA NIM reranking `POST /v1/ranking` (NVIDIARerank of LangChain/LlamaIndex/Haystack, LiteLLM nvidia_nim, AIPerf)."""

    model_config = ConfigDict(extra="ignore")

    # NIM requires it; here it may be left out, as in the Jina/vLLM and TEI bodies (the first served ensemble answers).
    model: str | None = None
    query: TextDocument
    passages: list[TextDocument]
    # NIM's default: a passage too long for the model is an error, not silently cut.
    truncate: Literal["NONE", "END"] = "NONE"
    # NVIDIA's hosted API (and LiteLLM's nvidia_nim provider) cut the rankings to the best `top_k`.
    top_k: int | None = Field(default=None, ge=1)
    instruction: str | None = None
    priority: int | None = PRIORITY_FIELD


# What each body shape of `POST /rerank` must carry: TEI's and the Jina/vLLM/Infinity one.
RERANK_SHAPES = {"texts": TEIRequest, "documents": JinaRequest}


def rerank_shape(data: dict) -> type[_Request]:
    """The schema of a `POST /rerank` body: TEI's when it has `texts`, Jina/vLLM's when it has `documents`.

    Raises:
        ValueError: naming what each shape needs, when the body has both fields or neither.
    """
    present = [field for field in RERANK_SHAPES if field in data]
    if len(present) == 1:
        return RERANK_SHAPES[present[0]]
    found = "both 'texts' and 'documents'" if present else "neither 'texts' nor 'documents'"
    raise ValueError(f"the body has {found}: TEI's shape needs 'query' and 'texts' (list of strings); the Jina/vLLM "
                     "shape needs 'query' and 'documents' (strings or {'text': ...} objects)")
