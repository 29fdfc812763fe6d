"""Request bodies of the three rerank APIs, as pydantic models; unknown fields are ignored, as the SDKs send extras."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    # SDKs send fields we have no use for (Cohere's `priority`, `rank_fields`): ignore, do not refuse.
    model_config = ConfigDict(extra="ignore")

    query: str
    # Extension of every schema: the reference's instruction line (MxbaiRerankV2 `instruction`).
    instruction: str | None = None


class CohereV2Request(_Request):
    """Cohere v2 `POST /v2/rerank`."""

    model: str
    documents: list[str]
    top_n: int | None = Field(default=None, ge=1)
    # Accepted for compatibility; documents are truncated as the reference truncates them (README).
    max_tokens_per_doc: int | None = Field(default=None, ge=1)


class TextDocument(BaseModel):
    text: str


class JinaRequest(_Request):
    """Jina / vLLM / Cohere v1 `POST /v1/rerank`: documents as strings or {"text": ...}."""

    model: str | None = None
    documents: list[str | TextDocument]
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = True

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class TEIRequest(_Request):
    """text-embeddings-inference `POST /rerank`."""

    model: str | None = None
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False
    # Accepted for compatibility; documents are truncated as the reference truncates them (README).
    truncate: bool | None = None
    truncation_direction: Literal["right", "Right"] = "right"
