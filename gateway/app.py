"""The FastAPI app: Cohere v2 `/v2/rerank`, Jina/vLLM `/v1/rerank`, TEI `/rerank`, `/v1/models`, `/health`, `/metrics`."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from mxbai_triton.client.rerank import rank_order, sigmoid_normalize

from .backend import BackendSettings, TritonBackend
from .errors import APIError, error_body, validation_error
from .metrics import GatewayMetrics
from .schemas import CohereV2Request, JinaRequest, TEIRequest

log = logging.getLogger(__name__)

# Status for a body that parses as JSON but does not fit the schema: what each API answers.
_SCHEMA_ERROR_STATUS = {"cohere": 400, "jina": 400, "tei": 422}


class Ranked:
    """One request's answer: the order (raw score desc, ties by index) and both kinds of score."""

    def __init__(self, raw: np.ndarray, estimated_max: float, top_n: int | None, token_counts: np.ndarray | None):
        self.raw = raw
        self.relevance = sigmoid_normalize(raw, estimated_max) if len(raw) else raw.astype(np.float64)
        # Sort on the raw scores: the sigmoid can round two different large scores to the same 1.0.
        self.order = rank_order(raw, top_n)
        self.total_tokens = None if token_counts is None else int(token_counts.sum())


def create_app(settings: BackendSettings, *, api_keys: frozenset[str] = frozenset()) -> FastAPI:
    """The gateway for Triton at `settings.urls`; with `api_keys`, rerank and model routes need `Authorization: Bearer KEY`."""
    metrics = GatewayMetrics()
    state: dict[str, TritonBackend] = {}

    @asynccontextmanager
    async def lifespan(_app):
        # gRPC aio channels belong to the loop that creates them: create them in the server's loop.
        state["backend"] = TritonBackend(settings)
        yield
        await state["backend"].close()

    app = FastAPI(title="mxbai-triton rerank gateway", lifespan=lifespan, docs_url=None, redoc_url=None)

    def authorize(request: Request) -> None:
        if not api_keys:
            return
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        # Bytes: compare_digest refuses str with non-ASCII characters, which a header may carry.
        given = key.strip().encode("utf-8", "surrogateescape")
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(given, k.encode()) for k in api_keys):
            raise APIError(401, "missing or invalid API key: send 'Authorization: Bearer <key>'")

    async def answer(api: str, request: Request, schema: type[BaseModel], run: Callable[[BaseModel], Awaitable]) -> Response:
        started, status = time.perf_counter(), 200
        metrics.in_flight.inc()
        try:
            authorize(request)
            body = await _parse(request, schema, _SCHEMA_ERROR_STATUS[api])
            return JSONResponse(await run(body))
        except APIError as error:
            status = error.status
            return JSONResponse(error_body(api, error), status_code=status)
        except asyncio.CancelledError:
            status = 499  # the client went away (nginx's code); nothing to answer
            raise
        except Exception as error:  # noqa: BLE001 - the server stays up; the client hears what broke
            log.exception("unexpected failure in %s", request.url.path)
            status = 500
            return JSONResponse(error_body(api, APIError(500, f"internal error: {type(error).__name__}: {error}")), status_code=status)
        finally:
            metrics.in_flight.dec()
            metrics.answered(api, status, time.perf_counter() - started)

    async def rank(api: str, model_name: str | None, query: str, documents: list[str], instruction: str | None,
                   top_n: int | None, field: str = "documents") -> tuple[str, Ranked]:
        backend = state["backend"]
        model = backend.resolve(model_name)
        if not documents:
            return model, Ranked(np.zeros(0, np.float32), 0.0, top_n, np.zeros(0, np.int64))
        scored, limits = await backend.score(model, query, documents, instruction, field=field)
        ranked = Ranked(scored.scores, limits.estimated_max, top_n, scored.token_counts)
        metrics.scored(api, len(documents), ranked.total_tokens)
        return model, ranked

    @app.post("/v2/rerank")
    async def cohere_v2(request: Request) -> Response:
        async def run(body: CohereV2Request):
            texts = body.texts()
            _, ranked = await rank("cohere", body.model, body.query, texts, body.instruction, body.top_n)
            return {
                "id": str(uuid.uuid4()),
                "results": [_result(ranked, i, texts if body.return_documents else None) for i in ranked.order],
                "meta": _cohere_meta(len(texts), ranked.total_tokens),
            }
        return await answer("cohere", request, CohereV2Request, run)

    @app.post("/v1/rerank")
    async def jina_v1(request: Request) -> Response:
        async def run(body: JinaRequest):
            texts = body.texts()
            model, ranked = await rank("jina", body.model, body.query, texts, body.instruction, body.top_n)
            results = [_result(ranked, i, texts if body.return_documents else None) for i in ranked.order]
            out = {"id": str(uuid.uuid4()), "model": model, "results": results,
                   "meta": _cohere_meta(len(texts), ranked.total_tokens, version="1")}
            if ranked.total_tokens is not None:
                out["usage"] = {"total_tokens": ranked.total_tokens, "prompt_tokens": ranked.total_tokens}
            return out
        return await answer("jina", request, JinaRequest, run)

    @app.post("/rerank")
    async def tei(request: Request) -> Response:
        async def run(body: TEIRequest):
            _, ranked = await rank("tei", body.model, body.query, body.texts, body.instruction, None, "texts")
            scores = ranked.raw if body.raw_scores else ranked.relevance
            return [
                {"index": i, "score": float(scores[i]), **({"text": body.texts[i]} if body.return_text else {})}
                for i in ranked.order
            ]
        return await answer("tei", request, TEIRequest, run)

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        try:
            authorize(request)
        except APIError as error:
            return JSONResponse(error_body("jina", error), status_code=error.status)
        return JSONResponse({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "mxbai-triton"} for m in state["backend"].models
        ]})

    @app.get("/health")
    async def health() -> Response:
        endpoints = await state["backend"].ready()
        ready = any(endpoints.values())
        return JSONResponse({"status": "ok" if ready else "unavailable", "triton": endpoints},
                            status_code=200 if ready else 503)

    @app.get("/live")
    async def live() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    return app


# 1000 documents of 8k tokens are ~35 MB of text: room for that, not for anything.
MAX_BODY_BYTES = 64 << 20


async def _parse(request: Request, schema: type[BaseModel], schema_status: int) -> BaseModel:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise APIError(413, f"the body has {int(declared)} bytes, more than the limit of {MAX_BODY_BYTES}")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise APIError(413, f"the body has {len(raw)} bytes, more than the limit of {MAX_BODY_BYTES}")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, bad UTF-8, 5000-digit integers, deep nesting
        raise APIError(400, f"the body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise APIError(schema_status, f"the body must be a JSON object, got {type(data).__name__}")
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise validation_error(error.errors(include_url=False), schema_status) from None


def _result(ranked: Ranked, index: int, texts: list[str] | None) -> dict:
    result: dict = {"index": index, "relevance_score": float(ranked.relevance[index])}
    if texts is not None:
        result["document"] = {"text": texts[index]}
    return result


def _cohere_meta(documents: int, tokens: int | None, *, version: str = "2") -> dict:
    # Cohere bills one search unit per query with up to 100 documents.
    meta: dict = {"api_version": {"version": version}, "billed_units": {"search_units": max(1, math.ceil(documents / 100))}}
    if tokens is not None:
        meta["tokens"] = {"input_tokens": tokens, "output_tokens": 0}
    return meta
