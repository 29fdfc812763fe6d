"""The OpenAPI description (/openapi.json, /docs): each route's request bodies, answers and error statuses."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from mxbai_triton.core.errors import KINDS, ErrorKind

from .responses import CohereError, NIMError, OpenAIError, TEIError

_ERROR_MODELS = {"cohere": CohereError, "jina": OpenAIError, "tei": TEIError, "nim": NIMError}


def error_statuses(api: str) -> dict[int, str]:
    """Each status `api` answers on failure, with the error kinds behind it (core/errors.py: the one table).

    A cancelled request (the client went away) gets no answer anyone reads, so it is not listed.
    """
    statuses: dict[int, list[str]] = {}
    for kind, rule in KINDS.items():
        if kind is not ErrorKind.CANCELLED:
            statuses.setdefault(rule.status(api), []).append(f"{kind.value}: {rule.meaning}")
    return {status: "; ".join(texts) for status, texts in sorted(statuses.items())}


def operation(api: str, requests: tuple[type[BaseModel], ...], response, description: str) -> dict:
    """Keyword arguments of a route decorator: request body schema(s), answer model, error statuses.

    The routes read their bodies themselves (each API's own error shape and limits), so FastAPI
    cannot see the body models: the request schema goes in through `openapi_extra`.
    """
    refs = [{"$ref": f"#/components/schemas/{model.__name__}"} for model in requests]
    return {
        "response_model": response,
        "description": description,
        "responses": {status: {"model": _ERROR_MODELS[api], "description": text} for status, text in error_statuses(api).items()},
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
