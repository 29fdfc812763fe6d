"""The gateway's error: a kind (core/errors.py) rendered at the edge in each API's status and body shape (Cohere,
OpenAI/vLLM, TEI, NIM), and quiet 5xx answers."""

from __future__ import annotations

import logging
import math
import re
import uuid
from dataclasses import dataclass, replace

from fastapi.responses import JSONResponse

from mxbai_triton.core.errors import KINDS, ErrorKind, Retry

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
# An id a proxy in front already gave the request (nginx's $request_id): kept when it is plain, so logs join up.
_GIVEN_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


@dataclass
class APIError(Exception):
    """A request that cannot be answered with scores: what went wrong (its kind), a message naming the problem,
    the field. The status and the body's shape come from the kind and the caller's API, at the edge.

    `detail` goes to the log only (exception text, endpoint addresses): 5xx answers carry `message`, which
    must say nothing about the server's insides. `retry_after` (seconds) becomes a Retry-After header.
    """

    kind: ErrorKind
    message: str
    field: str | None = None
    detail: str | None = None
    retry_after: float | None = None

    def __str__(self) -> str:
        return self.message

    def status(self, api: str) -> int:
        return KINDS[self.kind].status(api)


def error_body(api: str, error: APIError) -> dict:
    """`error` in the shape clients of `api` parse ("cohere", "jina", "tei" or "nim")."""
    status, kind = error.status(api), KINDS[error.kind].error_type(api)
    if api == "cohere":
        return {"message": error.message}
    if api == "tei":
        return {"error": error.message, "error_type": kind}
    if api == "nim":
        # NIM containers answer {"object": "error", "message": ...} (LangChain's NVIDIA client reads `message`).
        return {"object": "error", "message": error.message, "type": kind, "param": error.field, "code": status}
    return {"error": {"message": error.message, "type": kind, "param": error.field, "code": status}}


def error_response(api: str, error: APIError, request_id: str, *, close: bool = False) -> JSONResponse:
    """The answer to a failed request: 5xx with the request id and no details (those go to the log).

    `close`: the body was not read whole, so the connection closes rather than reading the rest.
    """
    status = error.status(api)
    if status >= 500:
        # Refusals for load come in floods and are counted on the metrics port: logged with -v only.
        level = logging.DEBUG if KINDS[error.kind].retry is Retry.AFTER_WAIT else logging.WARNING
        log.log(level, "request %s answered %d (%s): %s", request_id, status, error.kind.value, error.detail or error.message)
        error = replace(error, message=f"{error.message} (request id {request_id})")
    headers = {}
    if error.retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(error.retry_after)))
    if close:
        headers["connection"] = "close"
    return JSONResponse(error_body(api, error), status_code=status, headers=headers)


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


def validation_error(errors: list[dict]) -> APIError:
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
    return APIError(ErrorKind.INVALID_INPUT, f"'{field}': {message}" if field else message, field)


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
