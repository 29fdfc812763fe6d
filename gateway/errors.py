"""One error type for the gateway, the body each API gives it (Cohere, OpenAI/vLLM, TEI, NIM shapes), and quiet 5xx answers."""

from __future__ import annotations

import logging
import math
import re
import uuid
from dataclasses import dataclass, replace

from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)

# TEI's error_type for each status it uses (text-embeddings-inference router/src/http/types.rs).
_TEI_TYPES = {400: "Validation", 401: "Unauthorized", 404: "Validation", 408: "Validation", 413: "Validation",
              422: "Validation", 429: "Overloaded", 500: "Backend", 502: "Backend", 503: "Unhealthy", 504: "Backend"}
_OPENAI_TYPES = {400: "BadRequestError", 401: "AuthenticationError", 404: "NotFoundError", 408: "TimeoutError",
                 413: "BadRequestError", 422: "BadRequestError", 429: "RateLimitError", 502: "InternalServerError",
                 503: "ServiceUnavailableError", 504: "TimeoutError"}

REQUEST_ID_HEADER = "x-request-id"
# An id a proxy in front already gave the request (nginx's $request_id): kept when it is plain, so logs join up.
_GIVEN_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


@dataclass
class APIError(Exception):
    """A request that cannot be answered with scores: HTTP status, a message naming the problem, the field.

    `detail` goes to the log only (exception text, endpoint addresses): 5xx answers carry `message`, which
    must say nothing about the server's insides. `retry_after` (seconds) becomes a Retry-After header.
    """

    status: int
    message: str
    field: str | None = None
    detail: str | None = None
    retry_after: float | None = None

    def __str__(self) -> str:
        return self.message


def error_body(api: str, error: APIError) -> dict:
    """`error` in the shape clients of `api` parse ("cohere", "jina", "tei" or "nim")."""
    kind = _OPENAI_TYPES.get(error.status, "InternalServerError")
    if api == "cohere":
        return {"message": error.message}
    if api == "tei":
        return {"error": error.message, "error_type": _TEI_TYPES.get(error.status, "Backend")}
    if api == "nim":
        # NIM containers answer {"object": "error", "message": ...} (LangChain's NVIDIA client reads `message`).
        return {"object": "error", "message": error.message, "type": kind, "param": error.field, "code": error.status}
    return {"error": {"message": error.message, "type": kind, "param": error.field, "code": error.status}}


def error_response(api: str, error: APIError, request_id: str, *, close: bool = False) -> JSONResponse:
    """The answer to a failed request: 5xx with the request id and no details (those go to the log).

    `close`: the body was not read whole, so the connection closes rather than reading the rest.
    """
    if error.status >= 500:
        log.warning("request %s answered %d: %s", request_id, error.status, error.detail or error.message)
        error = replace(error, message=f"{error.message} (request id {request_id})")
    headers = {}
    if error.retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(error.retry_after)))
    if close:
        headers["connection"] = "close"
    return JSONResponse(error_body(api, error), status_code=error.status, headers=headers)


class RequestIds:
    """ASGI middleware: every request gets an id (a plain one from a proxy in front, else a new one), answered
    in `x-request-id` and kept in `request.state.request_id` for the logs."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = given if _GIVEN_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER.encode(), request_id.encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)


def without_traceback(message: str) -> str:
    """Triton's message for a python model's exception, without the traceback it appends ("At: /path/model.py(N)")."""
    return re.split(r"\n\s*At:", message, maxsplit=1)[0].rstrip()


_UNION_MEMBERS = ("str", "TextDocument")


def validation_error(errors: list[dict], status: int) -> APIError:
    """pydantic's first error as one line naming the field (e.g. "'top_n': Input should be >= 1")."""
    first = errors[0]
    loc = tuple(first.get("loc", ()))
    field = _field_path(loc)
    message = first.get("msg", "invalid value")
    if any(part in _UNION_MEMBERS for part in loc):
        # A document is a string or {"text": ...}: pydantic reports one error per member; say it once.
        message = "Input should be a string or an object with a string 'text'"
    elif first.get("type") == "model_type":  # NIM's {"text": ...} objects: no class names in messages
        message = "Input should be an object with a string 'text'"
    return APIError(status, f"'{field}': {message}" if field else message, field)


def _field_path(loc) -> str | None:
    """("documents", 0, "str") -> "documents[0]": list positions in brackets, stopping at a union member tag."""
    path = ""
    for part in loc:
        if part == "body":
            continue
        if part in _UNION_MEMBERS or "[" in str(part):
            break
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or None
