"""The serving core of the gateway: one scoring call shared by every API, and each API's answer built from it."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

import numpy as np

from mxbai_triton.core.deadline import Deadline
from mxbai_triton.core.dispatch import LEVEL_NAMES
from mxbai_triton.core.ranking import rank_order, sigmoid_normalize

from .admission import Admission
from .backend import TritonBackend
from .guard import Allowance, check_documents, prompt_token_bound
from .metrics import GatewayMetrics
from .responses import (
    APIVersion,
    BilledUnits,
    CohereMeta,
    CohereV2Response,
    Document,
    JinaResponse,
    JinaUsage,
    NIMRanking,
    NIMRankingResponse,
    NIMUsage,
    RelevanceResult,
    TEIRank,
    Tokens,
)
from .schemas import CohereV2Request, JinaRequest, NIMRankingRequest, TEIRequest, triton_priority
from .telemetry import Exchange


class Ranked:
    """One request's answer: the order (raw score desc, ties by index), both kinds of score, the token counts."""

    def __init__(self, model: str, raw: np.ndarray, estimated_max: float, top_n: int | None, token_counts: np.ndarray):
        self.model = model
        self.raw = raw
        self.relevance = sigmoid_normalize(raw, estimated_max) if len(raw) else raw.astype(np.float64)
        # Sort on the raw scores: the sigmoid can round two different large scores to the same 1.0.
        self.order = rank_order(raw, top_n)
        self.token_counts = token_counts
        self.total_tokens = int(token_counts.sum())

    def relevance_results(self, texts: list[str] | None) -> list[RelevanceResult]:
        return [RelevanceResult(index=i, relevance_score=float(self.relevance[i]),
                                document=None if texts is None else Document(text=texts[i])) for i in self.order]


@dataclass(frozen=True)
class RankRequest:
    """What every API's body asks, in one shape: the scoring call's input, and the caller's words for it."""

    api: str
    model: str | None
    query: str
    documents: list[str]
    instruction: str | None
    top_n: int | None = None
    field: str = "documents"  # what the API calls the document list, for messages about it
    priority: int | None = None
    truncate: str = "END"  # "NONE": a document the model would cut is refused, after tokenizing, before scoring


class RerankServing:
    """What the routes call: read the limits, run every admission check, then score, under the request's one deadline."""

    def __init__(self, backend: TritonBackend, metrics: GatewayMetrics, admission: Admission):
        self.backend = backend
        self.metrics = metrics
        self.admission = admission

    async def rank(self, request: RankRequest, allowance: Allowance | None, deadline: Deadline,
                   exchange: Exchange | None = None) -> Ranked:
        """Scores of the request's documents; `allowance` is checked and charged the request's token bound, and
        settled with the tokens it really cost. `exchange` gets the request's model, class, tokens and timings."""
        exchange = exchange or Exchange(uuid.uuid4().hex, request.api)
        with exchange.phase("admit"):
            model = exchange.model = await self.backend.registry.resolve(request.model)
            if not request.documents:
                return Ranked(model, np.zeros(0, np.float32), 0.0, request.top_n, np.zeros(0, np.int64))
            limits = await self.backend.limits(model, deadline)
            check_documents(len(request.documents), limits.max_documents, request.field)
            bound = prompt_token_bound(request.query, request.documents, request.instruction, limits.max_prompt_tokens)
            if allowance is not None:
                allowance.admit(bound, limits.max_prompt_tokens, request.field)
            priority = triton_priority(request.priority)
            ticket = self.admission.admit(bound, priority)
        exchange.level = LEVEL_NAMES[ticket.level]
        try:
            with exchange.phase("score"):
                scored = await self.backend.score(model, request.query, request.documents, request.instruction,
                                                  deadline=deadline, priority=priority, truncate=request.truncate,
                                                  field=request.field, request_id=exchange.request_id,
                                                  trace_headers=exchange.trace_headers())
        finally:
            ticket.release()
        ranked = Ranked(model, scored.scores, limits.estimated_max, request.top_n, scored.token_counts)
        exchange.scored(model, exchange.level, len(request.documents), ranked.total_tokens, scored.timings)
        if allowance is not None:
            allowance.settle(ranked.total_tokens)
        self.metrics.scored(request.api, len(request.documents), ranked.total_tokens)
        return ranked

    async def cohere(self, body: CohereV2Request, allowance: Allowance | None, deadline: Deadline,
                     exchange: Exchange | None = None) -> CohereV2Response:
        texts = body.texts()
        ranked = await self.rank(RankRequest("cohere", body.model, body.query, texts, body.instruction, body.top_n,
                                             priority=body.priority), allowance, deadline, exchange)
        return CohereV2Response(id=_answer_id(exchange), results=ranked.relevance_results(texts if body.return_documents else None),
                                meta=_cohere_meta(len(texts), ranked.total_tokens))

    async def jina(self, body: JinaRequest, allowance: Allowance | None, deadline: Deadline,
                   exchange: Exchange | None = None) -> JinaResponse:
        texts = body.texts()
        ranked = await self.rank(RankRequest("jina", body.model, body.query, texts, body.instruction, body.top_n,
                                             priority=body.priority), allowance, deadline, exchange)
        usage = JinaUsage(total_tokens=ranked.total_tokens, prompt_tokens=ranked.total_tokens)
        return JinaResponse(id=_answer_id(exchange), model=ranked.model, usage=usage,
                            results=ranked.relevance_results(texts if body.return_documents else None),
                            meta=_cohere_meta(len(texts), ranked.total_tokens, version="1"))

    async def tei(self, body: TEIRequest, allowance: Allowance | None, deadline: Deadline,
                  exchange: Exchange | None = None) -> list[TEIRank]:
        # TEI's `truncate: false` refuses a too-long input; left out, the reference's cut applies.
        ranked = await self.rank(RankRequest("tei", body.model, body.query, body.texts, body.instruction, field="texts",
                                             priority=body.priority, truncate="NONE" if body.truncate is False else "END"),
                                 allowance, deadline, exchange)
        scores = ranked.raw if body.raw_scores else ranked.relevance
        return [TEIRank(index=i, score=float(scores[i]), text=body.texts[i] if body.return_text else None)
                for i in ranked.order]

    async def nim(self, body: NIMRankingRequest, allowance: Allowance | None, deadline: Deadline,
                  exchange: Exchange | None = None) -> NIMRankingResponse:
        texts = [passage.text for passage in body.passages]
        ranked = await self.rank(RankRequest("nim", body.model, body.query.text, texts, body.instruction, body.top_k,
                                             field="passages", priority=body.priority, truncate=body.truncate),
                                 allowance, deadline, exchange)
        usage = NIMUsage(prompt_tokens=ranked.total_tokens, total_tokens=ranked.total_tokens)
        return NIMRankingResponse(rankings=[NIMRanking(index=i, logit=float(ranked.raw[i])) for i in ranked.order],
                                  usage=usage)


def _answer_id(exchange: Exchange | None) -> str:
    """The answer's `id`: the request's id (its x-request-id, Triton's request id, the access log's)."""
    return exchange.request_id if exchange is not None else uuid.uuid4().hex


def _cohere_meta(documents: int, tokens: int, *, version: str = "2") -> CohereMeta:
    # Cohere bills one search unit per query with up to 100 documents.
    return CohereMeta(api_version=APIVersion(version=version),
                      billed_units=BilledUnits(search_units=max(1, math.ceil(documents / 100))),
                      tokens=Tokens(input_tokens=tokens))
