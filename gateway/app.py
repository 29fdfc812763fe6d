"""The FastAPI app: Cohere v2 `/v2/rerank`, Jina/vLLM `/v1/rerank`, TEI or Jina/vLLM `/rerank`, NIM `/v1/ranking` (and
NVIDIA's hosted `/v1/retrieval/{model}/reranking`), `/v1/models`, `/health`, `/live`, `/metrics`, `/docs`."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from mxbai_triton.core.deadline import Deadline
from mxbai_triton.core.errors import KINDS, ErrorKind
from mxbai_triton.core.tracing import service_name, tracer_provider

from . import openapi
from .admission import Admission, AdmissionLimits
from .backend import BackendSettings, TritonBackend
from .errors import APIError, RequestIds, error_response, validation_error
from .guard import Allowance, BodyBudget, ClientGone, GuardSettings, RateLimiter, read_body
from .metrics import GatewayMetrics
from .responses import CohereV2Response, Health, JinaResponse, ModelCard, ModelList, NIMRankingResponse, TEIRank
from .schemas import CohereV2Request, JinaRequest, NIMRankingRequest, TEIRequest, rerank_shape
from .serving import RerankServing
from .telemetry import Exchange

log = logging.getLogger(__name__)

# Bodies parsed off the event loop from this size: other requests are not held while a big one is parsed.
_PARSE_IN_THREAD_BYTES = 1 << 20

# A serving call: the parsed body, the caller's token allowance, the request's deadline, its telemetry -> the answer.
Call = Callable[[BaseModel, Allowance, Deadline, Exchange], Awaitable]
# The handler of a route: (API, body schema, serving call), picked from the parsed JSON.
Pick = Callable[[dict], tuple[str, type[BaseModel], Call]]


def create_app(settings: BackendSettings, *, api_keys: frozenset[str] = frozenset(), guard: GuardSettings = GuardSettings(),
               open_docs: bool = False, metrics: GatewayMetrics | None = None, metrics_route: bool = True,
               admission: AdmissionLimits = AdmissionLimits(), access_log: bool = False) -> FastAPI:
    """The gateway for Triton at `settings.urls`.

    With `api_keys`, every route but the probes (/health, /live) needs `Authorization: Bearer KEY`: the
    rerank and model routes, /metrics (unless `metrics_route` is False: served on a port of its own),
    and the OpenAPI page (/docs, /openapi.json) unless `open_docs`. `admission` bounds the work in
    flight per class; beyond it requests are refused at once. `app.state.draining` (set on SIGTERM by
    http_server) turns readiness off while the requests in flight finish. `access_log`: one line per rerank
    request (gateway/telemetry.py). Traces are on when the OTEL_* environment names an endpoint (core/tracing.py).
    """
    metrics = metrics or GatewayMetrics()
    traces = tracer_provider(service_name())
    tracer = None if traces is None else traces.get_tracer("mxbai_triton.gateway")
    budget = BodyBudget(guard.buffered_bytes)
    limiter = RateLimiter(guard.rate_requests, guard.rate_tokens)
    state: dict = {}

    @asynccontextmanager
    async def lifespan(_app):
        # gRPC aio channels belong to the loop that creates them: create them in the server's loop.
        backend = TritonBackend(settings)
        state["serving"] = RerankServing(backend, metrics, Admission(admission, metrics))
        discovery = asyncio.ensure_future(backend.registry.run())
        yield
        discovery.cancel()
        backend.registry.close()
        await asyncio.gather(discovery, return_exceptions=True)
        await backend.close()
        if traces is not None:
            traces.shutdown()  # what is still batched goes out

    app = FastAPI(title="mxbai-triton rerank gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None,
                  description="Rerank HTTP APIs (Cohere v2, Jina/vLLM, TEI, NVIDIA NIM) in front of Triton.")
    app.add_middleware(RequestIds)
    app.state.draining = False

    def authorize(request: Request) -> str:
        """The caller: its API key, or its address when the gateway has no keys."""
        if not api_keys:
            return request.client.host if request.client else "-"
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        # Bytes: compare_digest refuses str with non-ASCII characters, which a header may carry.
        given = key.strip().encode("utf-8", "surrogateescape")
        matched = [k for k in api_keys if hmac.compare_digest(given, k.encode())]
        if scheme.lower() != "bearer" or not matched:
            raise APIError(ErrorKind.UNAUTHORIZED, "missing or invalid API key: send 'Authorization: Bearer <key>'")
        return matched[0]

    async def answer(api: str, request: Request, pick: Pick, path_model: str | None = None) -> Response:
        """Authorize, bound, parse, call, answer: the one path of every rerank route (errors, metrics, statuses).

        The request's one deadline starts here, at the edge, and every wait below reads it. Every answer,
        success or error, carries the request's id and timing headers (Exchange).
        """
        status, kind = 200, None
        deadline = Deadline.after(settings.timeout)
        request_id = request.state.request_id
        exchange = Exchange(request_id, api, tracer)
        exchange.begin(request.headers, request.url.path)
        claim = budget.claim()
        allowance = None
        metrics.in_flight.inc()
        try:
            with exchange.phase("authorize"):
                caller = authorize(request)
                limiter.admit(caller)
            allowance = Allowance(limiter, caller, guard.max_request_tokens)
            with exchange.phase("parse"):
                data = await _read_json(request, guard, claim)
                if path_model is not None:  # NVIDIA's hosted path names the model; the body's own name, if any, yields
                    data["model"] = path_model
                api, schema, run = pick(data)
                exchange.api = api
                body = _validate(schema, data)
            result = await _unless_disconnected(request, run(body, allowance, deadline, exchange))
            with exchange.phase("respond"):
                response = JSONResponse(_dump(result))
        except APIError as error:
            status, kind = error.status(api), error.kind
            response = error_response(api, error, request_id, close=not claim.complete and _has_body(request))
        except ClientGone:
            # The client went away (nginx's code); its Triton request was cancelled.
            status, kind = KINDS[ErrorKind.CANCELLED].http, ErrorKind.CANCELLED
            response = Response(status_code=status)
        except asyncio.CancelledError:
            status, kind = KINDS[ErrorKind.CANCELLED].http, ErrorKind.CANCELLED
            raise
        except Exception as error:  # noqa: BLE001 - the server stays up; the details go to the log, not the client
            log.exception("request %s: unexpected failure in %s", request_id, request.url.path)
            failure = APIError(ErrorKind.INTERNAL, "internal error", detail=f"{type(error).__name__}: {error}")
            status, kind = failure.status(api), failure.kind
            response = error_response(api, failure, request_id)
        finally:
            claim.release()
            if allowance is not None:
                allowance.release()
            metrics.in_flight.dec()
            exchange.finish(status, kind.value if kind else None, log=access_log)
            metrics.answered(api, status, exchange.total, kind.value if kind else None, exchange.level)
        response.headers.update(exchange.headers())
        return response

    def keyed(request: Request) -> Response | None:
        """None when the request may go on, else the 401 to answer (the routes without an API shape answer Jina's)."""
        try:
            authorize(request)
        except APIError as error:
            return error_response("jina", error, request.state.request_id)
        return None

    def serving() -> RerankServing:
        return state["serving"]

    def cohere(_data: dict):
        return "cohere", CohereV2Request, serving().cohere

    def jina(_data: dict):
        return "jina", JinaRequest, serving().jina

    def nim(_data: dict):
        return "nim", NIMRankingRequest, serving().nim

    def by_shape(data: dict):
        """`POST /rerank`: TEI's body or the Jina/vLLM one, told apart by their document field."""
        try:
            schema = rerank_shape(data)
        except ValueError as error:
            raise APIError(ErrorKind.INVALID_INPUT, str(error)) from None
        return ("tei", TEIRequest, serving().tei) if schema is TEIRequest else jina(data)

    @app.post("/v2/rerank", **openapi.operation("cohere", (CohereV2Request,), CohereV2Response, "Cohere v2 rerank."))
    async def cohere_v2(request: Request) -> Response:
        return await answer("cohere", request, cohere)

    @app.post("/v1/rerank", **openapi.operation("jina", (JinaRequest,), JinaResponse, "Jina / vLLM / Cohere v1 rerank."))
    async def jina_v1(request: Request) -> Response:
        return await answer("jina", request, jina)

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
        return await answer("nim", request, nim)

    # LiteLLM's `nvidia_nim/<model>` posts here (NVIDIA's hosted catalog); the model id may hold "/".
    @app.post("/v1/retrieval/{model:path}/reranking", **openapi.operation(
        "nim", (NIMRankingRequest,), NIMRankingResponse,
        "NVIDIA's hosted reranking path: the NIM body and answer, the model named in the path."))
    async def nim_hosted_ranking(request: Request, model: str) -> Response:
        return await answer("nim", request, nim, path_model=model)

    @app.get("/v1/models", response_model=ModelList, description="The rerank ensembles served (discovered on Triton).")
    async def models(request: Request) -> Response:
        refused = keyed(request)
        return refused or JSONResponse(_dump(ModelList(data=[ModelCard(id=m) for m in serving().backend.registry.models])))

    @app.get("/health", response_model=Health, description="Readiness: 200 when every served ensemble is ready on an endpoint; "
                                                          "503 once the gateway is draining (SIGTERM).")
    async def health() -> Response:
        if app.state.draining:
            return JSONResponse(_dump(Health(status="draining")), status_code=503)
        endpoints = await serving().backend.ready()
        ready = sum(endpoints.values())
        return JSONResponse(_dump(Health(status="ok" if ready else "unavailable", ready_endpoints=ready, endpoints=len(endpoints))),
                            status_code=200 if ready else 503)

    @app.get("/live", response_model=Health, description="Liveness: 200 while the process runs.")
    async def live() -> Response:
        return JSONResponse({"status": "ok"})

    if metrics_route:
        @app.get("/metrics", response_class=Response, description="Prometheus metrics of the gateway.")
        async def prometheus(request: Request) -> Response:
            return keyed(request) or Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(request: Request) -> Response:
        return (None if open_docs else keyed(request)) or JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> Response:
        return (None if open_docs else keyed(request)) or get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)

    openapi.install(app, (CohereV2Request, JinaRequest, TEIRequest, NIMRankingRequest))
    return app


async def _read_json(request: Request, guard: GuardSettings, claim) -> dict:
    raw = await read_body(request.receive, request.headers, guard, claim)
    try:
        data = await asyncio.to_thread(json.loads, raw) if len(raw) >= _PARSE_IN_THREAD_BYTES else json.loads(raw)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, bad UTF-8, 5000-digit integers, deep nesting
        raise APIError(ErrorKind.INVALID_INPUT, f"the body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise APIError(ErrorKind.INVALID_INPUT, f"the body must be a JSON object, got {type(data).__name__}")
    return data


def _has_body(request: Request) -> bool:
    return request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers


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


def _validate(schema: type[BaseModel], data: dict) -> BaseModel:
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise validation_error(error.errors(include_url=False)) from None


def _dump(result):
    """Response models as JSON-ready data; fields left unset by the API (None) are left out."""
    if isinstance(result, list):
        return [_dump(item) for item in result]
    return result.model_dump(exclude_none=True) if isinstance(result, BaseModel) else result
