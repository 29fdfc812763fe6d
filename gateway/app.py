"""The FastAPI app: Cohere v2 `/v2/rerank`, Jina/vLLM `/v1/rerank`, TEI or Jina/vLLM `/rerank`, NIM `/v1/ranking`,
`/v1/models`, `/health`, `/live`, `/metrics`, `/docs`."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from . import openapi
from .backend import BackendSettings, TritonBackend
from .errors import APIError, error_body, validation_error
from .metrics import GatewayMetrics
from .responses import CohereV2Response, Health, JinaResponse, ModelCard, ModelList, NIMRankingResponse, TEIRank
from .schemas import CohereV2Request, JinaRequest, NIMRankingRequest, TEIRequest, rerank_shape
from .serving import RerankServing

log = logging.getLogger(__name__)

# Status for a body that parses as JSON but does not fit the schema: what each API answers.
_SCHEMA_ERROR_STATUS = {"cohere": 400, "jina": 400, "tei": 422, "nim": 422}
# The API whose shape a `POST /rerank` body has, by its schema.
_RERANK_APIS = {TEIRequest: "tei", JinaRequest: "jina"}

# One handler per API: (body schema, serving call), picked from the parsed JSON.
Pick = Callable[[dict], tuple[str, type[BaseModel], Callable[[BaseModel], Awaitable]]]


def create_app(settings: BackendSettings, *, api_keys: frozenset[str] = frozenset()) -> FastAPI:
    """The gateway for Triton at `settings.urls`; with `api_keys`, rerank and model routes need `Authorization: Bearer KEY`.

    The probes (/health, /live), /metrics and the OpenAPI page (/docs, /openapi.json) stay open.
    """
    metrics = GatewayMetrics()
    state: dict = {}

    @asynccontextmanager
    async def lifespan(_app):
        # gRPC aio channels belong to the loop that creates them: create them in the server's loop.
        backend = TritonBackend(settings)
        state["serving"] = RerankServing(backend, metrics)
        discovery = asyncio.ensure_future(backend.registry.run())
        yield
        discovery.cancel()
        backend.registry.close()
        await asyncio.gather(discovery, return_exceptions=True)
        await backend.close()

    app = FastAPI(title="mxbai-triton rerank gateway", lifespan=lifespan, docs_url="/docs", redoc_url=None,
                  description="Rerank HTTP APIs (Cohere v2, Jina/vLLM, TEI, NVIDIA NIM) in front of Triton.")

    def authorize(request: Request) -> None:
        if not api_keys:
            return
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        # Bytes: compare_digest refuses str with non-ASCII characters, which a header may carry.
        given = key.strip().encode("utf-8", "surrogateescape")
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(given, k.encode()) for k in api_keys):
            raise APIError(401, "missing or invalid API key: send 'Authorization: Bearer <key>'")

    async def answer(api: str, request: Request, pick: Pick) -> Response:
        """Authorize, parse, call, answer: the one path of every rerank route (errors, metrics, statuses)."""
        started, status = time.perf_counter(), 200
        metrics.in_flight.inc()
        try:
            authorize(request)
            data = await _read_json(request, _SCHEMA_ERROR_STATUS[api])
            api, schema, run = pick(data)
            result = await _unless_disconnected(request, run(_validate(schema, data, _SCHEMA_ERROR_STATUS[api])))
            return JSONResponse(_dump(result))
        except APIError as error:
            status = error.status
            return JSONResponse(error_body(api, error), status_code=status)
        except ClientGone:
            status = 499  # the client went away (nginx's code); its Triton request was cancelled
            return Response(status_code=status)
        except asyncio.CancelledError:
            status = 499
            raise
        except Exception as error:  # noqa: BLE001 - the server stays up; the client hears what broke
            log.exception("unexpected failure in %s", request.url.path)
            status = 500
            return JSONResponse(error_body(api, APIError(500, f"internal error: {type(error).__name__}: {error}")),
                                status_code=status)
        finally:
            metrics.in_flight.dec()
            metrics.answered(api, status, time.perf_counter() - started)

    def serving() -> RerankServing:
        return state["serving"]

    def fixed(api: str, schema: type[BaseModel], call: str) -> Pick:
        return lambda _data: (api, schema, getattr(serving(), call))

    def by_shape(data: dict):
        try:
            schema = rerank_shape(data)
        except ValueError as error:
            raise APIError(422, str(error)) from None
        api = _RERANK_APIS[schema]
        return api, schema, getattr(serving(), api)

    @app.post("/v2/rerank", **openapi.operation("cohere", (CohereV2Request,), CohereV2Response, "Cohere v2 rerank."))
    async def cohere_v2(request: Request) -> Response:
        return await answer("cohere", request, fixed("cohere", CohereV2Request, "cohere"))

    @app.post("/v1/rerank", **openapi.operation("jina", (JinaRequest,), JinaResponse, "Jina / vLLM / Cohere v1 rerank."))
    async def jina_v1(request: Request) -> Response:
        return await answer("jina", request, fixed("jina", JinaRequest, "jina"))

    @app.post("/rerank", **openapi.operation(
        "tei", (TEIRequest, JinaRequest), list[TEIRank] | JinaResponse,
        "TEI's body (`texts`) answered in TEI's shape; the Jina/vLLM/Infinity body (`documents`) answered in that "
        "shape, its errors in the OpenAI style."))
    async def rerank(request: Request) -> Response:
        return await answer("tei", request, by_shape)

    @app.post("/v1/ranking", **openapi.operation(
        "nim", (NIMRankingRequest,), NIMRankingResponse,
        "NVIDIA NIM reranking: rankings best first, logit = raw score. truncate NONE (default) refuses a passage "
        "the model would cut; END cuts it as the reference does."))
    async def nim_ranking(request: Request) -> Response:
        return await answer("nim", request, fixed("nim", NIMRankingRequest, "nim"))

    @app.get("/v1/models", response_model=ModelList, description="The rerank ensembles served (discovered on Triton).")
    async def models(request: Request) -> Response:
        try:
            authorize(request)
        except APIError as error:
            return JSONResponse(error_body("jina", error), status_code=error.status)
        return JSONResponse(_dump(ModelList(data=[ModelCard(id=m) for m in serving().backend.models])))

    @app.get("/health", response_model=Health, description="Readiness: 200 when every served ensemble is ready on an endpoint.")
    async def health() -> Response:
        endpoints = await serving().backend.ready()
        ready = any(endpoints.values())
        return JSONResponse(_dump(Health(status="ok" if ready else "unavailable", triton=endpoints)),
                            status_code=200 if ready else 503)

    @app.get("/live", response_model=Health, description="Liveness: 200 while the process runs.")
    async def live() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", response_class=Response, description="Prometheus metrics of the gateway.")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    openapi.install(app, (CohereV2Request, JinaRequest, TEIRequest, NIMRankingRequest))
    return app


# 1000 documents of 8k tokens are ~35 MB of text: room for that, not for anything.
MAX_BODY_BYTES = 64 << 20


async def _read_json(request: Request, schema_status: int) -> dict:
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
    return data


class ClientGone(Exception):
    """The HTTP client disconnected before its answer was ready."""


async def _unless_disconnected(request: Request, work: Awaitable):
    """`work`'s result, or ClientGone after cancelling it when the client disconnects first.

    Cancelling the scoring call cancels its gRPC request, and Triton stops the dispatch between
    sub-batches: work nobody waits for stops. The body has been read, so the next ASGI message is
    the disconnect.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise ClientGone()
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()


async def _disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _validate(schema: type[BaseModel], data: dict, schema_status: int) -> BaseModel:
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise validation_error(error.errors(include_url=False), schema_status) from None


def _dump(result):
    """Response models as JSON-ready data; fields left unset by the API (None) are left out."""
    if isinstance(result, list):
        return [_dump(item) for item in result]
    return result.model_dump(exclude_none=True) if isinstance(result, BaseModel) else result
