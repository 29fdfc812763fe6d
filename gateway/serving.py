"""The serving core of the gateway: one scoring call shared by every API, and each API's answer built from it."""

from __future__ import annotations

import math
import uuid

import numpy as np

from mxbai_triton.client.rerank import rank_order, sigmoid_normalize

from .backend import TritonBackend
from .errors import APIError
from .guard import Allowance
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

# Passages named in one `truncate: NONE` refusal; the count says how many more.
_NAMED_TOO_LONG = 10


class Ranked:
    """One request's answer: the order (raw score desc, ties by index), both kinds of score, the token counts."""

    def __init__(self, model: str, raw: np.ndarray, estimated_max: float, top_n: int | None,
                 token_counts: np.ndarray, max_prompt_tokens: int | None = None):
        self.model = model
        self.raw = raw
        self.relevance = sigmoid_normalize(raw, estimated_max) if len(raw) else raw.astype(np.float64)
        # Sort on the raw scores: the sigmoid can round two different large scores to the same 1.0.
        self.order = rank_order(raw, top_n)
        self.token_counts = token_counts
        self.total_tokens = int(token_counts.sum())
        self.max_prompt_tokens = max_prompt_tokens

    def relevance_results(self, texts: list[str] | None) -> list[RelevanceResult]:
        return [RelevanceResult(index=i, relevance_score=float(self.relevance[i]),
                                document=None if texts is None else Document(text=texts[i])) for i in self.order]


class RerankServing:
    """What the routes call: resolve the model, score on Triton, shape the answer for the caller's API."""

    def __init__(self, backend: TritonBackend, metrics: GatewayMetrics):
        self.backend = backend
        self.metrics = metrics

    async def rank(self, api: str, model_name: str | None, query: str, documents: list[str], instruction: str | None,
                   top_n: int | None, allowance: Allowance | None, *, field: str = "documents",
                   priority: int | None = None) -> Ranked:
        """Scores of `documents`; `allowance` checks the request's token bound once the ensemble's cap is known,
        and is settled with the tokens it really cost."""
        model = await self.backend.resolve(model_name)
        if not documents:
            return Ranked(model, np.zeros(0, np.float32), 0.0, top_n, np.zeros(0, np.int64))

        def admit(limits) -> None:
            if allowance is not None:
                allowance.admit(query, documents, instruction, limits.max_prompt_tokens, field)

        scored, limits = await self.backend.score(model, query, documents, instruction, field=field,
                                                  priority=triton_priority(priority), admit=admit)
        ranked = Ranked(model, scored.scores, limits.estimated_max, top_n, scored.token_counts, limits.max_prompt_tokens)
        if allowance is not None:
            allowance.settle(ranked.total_tokens)
        self.metrics.scored(api, len(documents), ranked.total_tokens)
        return ranked

    async def cohere(self, body: CohereV2Request, allowance: Allowance | None = None) -> CohereV2Response:
        texts = body.texts()
        ranked = await self.rank("cohere", body.model, body.query, texts, body.instruction, body.top_n, allowance,
                                 priority=body.priority)
        return CohereV2Response(id=str(uuid.uuid4()), results=ranked.relevance_results(texts if body.return_documents else None),
                                meta=_cohere_meta(len(texts), ranked.total_tokens))

    async def jina(self, body: JinaRequest, allowance: Allowance | None = None) -> JinaResponse:
        texts = body.texts()
        ranked = await self.rank("jina", body.model, body.query, texts, body.instruction, body.top_n, allowance,
                                 priority=body.priority)
        usage = JinaUsage(total_tokens=ranked.total_tokens, prompt_tokens=ranked.total_tokens)
        return JinaResponse(id=str(uuid.uuid4()), model=ranked.model, usage=usage,
                            results=ranked.relevance_results(texts if body.return_documents else None),
                            meta=_cohere_meta(len(texts), ranked.total_tokens, version="1"))

    async def tei(self, body: TEIRequest, allowance: Allowance | None = None) -> list[TEIRank]:
        ranked = await self.rank("tei", body.model, body.query, body.texts, body.instruction, None, allowance, field="texts",
                                 priority=body.priority)
        scores = ranked.raw if body.raw_scores else ranked.relevance
        return [TEIRank(index=i, score=float(scores[i]), text=body.texts[i] if body.return_text else None)
                for i in ranked.order]

    async def nim(self, body: NIMRankingRequest, allowance: Allowance | None = None) -> NIMRankingResponse:
        texts = [passage.text for passage in body.passages]
        ranked = await self.rank("nim", body.model, body.query.text, texts, body.instruction, None, allowance,
                                 field="passages", priority=body.priority)
        if body.truncate == "NONE":
            refuse_cut_passages(ranked)
        usage = NIMUsage(prompt_tokens=ranked.total_tokens, total_tokens=ranked.total_tokens)
        return NIMRankingResponse(rankings=[NIMRanking(index=i, logit=float(ranked.raw[i])) for i in ranked.order],
                                  usage=usage)


def refuse_cut_passages(ranked: Ranked) -> None:
    """APIError 400 naming the passages the tokenizer cut (NIM's `truncate: NONE`).

    Exact by the tokenizer's own rule: it cuts a prompt to `max_prompt_tokens` and leaves shorter
    ones whole, so a count below the cap is a whole passage. A count at the cap is a cut passage or
    one that fills the limit to the last token; both are refused, never scored cut.
    """
    if not len(ranked.raw):
        return
    cut = np.flatnonzero(ranked.token_counts >= ranked.max_prompt_tokens).tolist()
    if not cut:
        return
    named = ", ".join(f"passages[{i}]" for i in cut[:_NAMED_TOO_LONG])
    more = f" and {len(cut) - _NAMED_TOO_LONG} more" if len(cut) > _NAMED_TOO_LONG else ""
    raise APIError(400, f"Input length of {named}{more} (prompt template + query + passage) exceeds maximum allowed "
                        f"token size {ranked.max_prompt_tokens - 1}; send 'truncate': 'END' to score it cut as the "
                        "reference cuts it", "passages")


def _cohere_meta(documents: int, tokens: int, *, version: str = "2") -> CohereMeta:
    # Cohere bills one search unit per query with up to 100 documents.
    return CohereMeta(api_version=APIVersion(version=version),
                      billed_units=BilledUnits(search_units=max(1, math.ceil(documents / 100))),
                      tokens=Tokens(input_tokens=tokens))
