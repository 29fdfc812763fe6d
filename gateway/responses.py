"""Response and error bodies of the rerank APIs, as pydantic models: what the serving code returns and /docs describes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Document(BaseModel):
    text: str


class RelevanceResult(BaseModel):
    """One ranked document in the Cohere and Jina/vLLM shapes (relevance = the reference's normalised score)."""

    index: int
    relevance_score: float
    document: Document | None = None


class Tokens(BaseModel):
    input_tokens: int
    output_tokens: int = 0


class BilledUnits(BaseModel):
    search_units: int


class APIVersion(BaseModel):
    version: str


class CohereMeta(BaseModel):
    api_version: APIVersion
    billed_units: BilledUnits
    tokens: Tokens | None = None


class CohereV2Response(BaseModel):
    id: str
    results: list[RelevanceResult]
    meta: CohereMeta


class JinaUsage(BaseModel):
    total_tokens: int
    prompt_tokens: int


class JinaResponse(BaseModel):
    id: str
    model: str
    results: list[RelevanceResult]
    usage: JinaUsage | None = None
    meta: CohereMeta


class TEIRank(BaseModel):
    """One ranked text in TEI's shape: `score` is raw with raw_scores, else the normalised score."""

    index: int
    score: float
    text: str | None = None


class NIMRanking(BaseModel):
    """One ranked passage in NIM's shape: `logit` is the raw score, logit("1") - logit("0")."""

    index: int
    logit: float


class NIMUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class NIMRankingResponse(BaseModel):
    rankings: list[NIMRanking]
    usage: NIMUsage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "mxbai-triton"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    """Readiness without Triton's addresses: how many endpoints serve every ensemble, of how many."""

    status: Literal["ok", "unavailable", "draining"]
    ready_endpoints: int | None = None
    endpoints: int | None = None


# Error bodies, one per API family (gateway/errors.py builds them).
class CohereError(BaseModel):
    message: str


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


class TEIError(BaseModel):
    error: str
    error_type: str


class NIMError(BaseModel):
    object: Literal["error"] = "error"
    message: str
    type: str
    param: str | None = None
    code: int
