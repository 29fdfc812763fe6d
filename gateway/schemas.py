"""Request bodies of the three rerank APIs, as pydantic models; unknown fields are ignored, as the SDKs send extras."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Request(BaseModel):
    # SDKs send fields we have no use for (Cohere's `priority`, `rank_fields`): ignore, do not refuse.
    model_config = ConfigDict(extra="ignore")

    query: str
    # Extension of every schema: the reference's instruction line (MxbaiRerankV2 `instruction`).
    instruction: str | None = None


class TextDocument(BaseModel):
    text: str


def _texts(documents: list[str | TextDocument]) -> list[str]:
    return [d if isinstance(d, str) else d.text for d in documents]


class CohereV2Request(_Request):
    """Cohere v2 `POST /v2/rerank` (LiteLLM may pass documents as {"text": ...}; older clients ask for them back)."""

    model: str
    documents: list[str | TextDocument]
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
