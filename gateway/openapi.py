"""The OpenAPI description (/openapi.json, /docs): each route's request bodies, answers and error statuses."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from .responses import CohereError, NIMError, OpenAIError, TEIError

_ERROR_MODELS = {"cohere": CohereError, "jina": OpenAIError, "tei": TEIError, "nim": NIMError}
# What each status means, for every API (README "HTTP rerank APIs" has the same table).
_STATUSES = {
    400: "body not JSON, a wrong type or value (Cohere, Jina/vLLM); NIM: a passage too long with truncate NONE",
    401: "missing or wrong 'Authorization: Bearer KEY' when the gateway runs with --api-key-file",
    404: "model not served; the message lists the served ones",
    408: "the body did not arrive within --api-body-timeout seconds",
    413: "more documents than the ensemble's max_documents_per_request, a body over --api-max-body-mib, or a prompt-token "
         "bound over --api-max-request-tokens",
    422: "a wrong type or value (TEI, NIM), or a /rerank body with both or neither of 'texts' and 'documents'",
    429: "over the caller's --api-rate-requests or --api-rate-tokens; Retry-After says when to retry",
    500: "an unexpected failure in the gateway; the message carries the request id, the log the details",
    502: "Triton failed the request or answered something unusable",
    503: "no Triton endpoint answered within --api-retry-for seconds, no rerank ensemble is served, or the gateway "
         "holds --api-buffered-mib of bodies (Retry-After)",
    504: "no answer within --api-timeout seconds",
}


def operation(api: str, requests: tuple[type[BaseModel], ...], response, description: str) -> dict:
    """Keyword arguments of a route decorator: request body schema(s), answer model, error statuses.

    The routes read their bodies themselves (each API's own error shape and limits), so FastAPI
    cannot see the body models: the request schema goes in through `openapi_extra`.
    """
    refs = [{"$ref": f"#/components/schemas/{model.__name__}"} for model in requests]
    return {
        "response_model": response,
        "description": description,
        "responses": {status: {"model": _ERROR_MODELS[api], "description": text} for status, text in _STATUSES.items()},
        "openapi_extra": {"requestBody": {"required": True, "content": {
            "application/json": {"schema": refs[0] if len(refs) == 1 else {"oneOf": refs}}}}},
    }


def install(app: FastAPI, request_models: tuple[type[BaseModel], ...]) -> None:
    """Generate the document once, with the request models among its components."""
    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in request_models:
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
