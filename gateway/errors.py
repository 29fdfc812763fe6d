"""One error type for the gateway, and the body each API gives it (Cohere, OpenAI/vLLM, TEI, NIM shapes)."""

from __future__ import annotations

from dataclasses import dataclass

# TEI's error_type for each status it uses (text-embeddings-inference router/src/http/types.rs).
_TEI_TYPES = {400: "Validation", 401: "Unauthorized", 404: "Validation", 413: "Validation", 422: "Validation",
              500: "Backend", 502: "Backend", 503: "Unhealthy", 504: "Backend"}
_OPENAI_TYPES = {400: "BadRequestError", 401: "AuthenticationError", 404: "NotFoundError", 413: "BadRequestError",
                 422: "BadRequestError", 502: "InternalServerError", 503: "ServiceUnavailableError",
                 504: "TimeoutError"}


@dataclass
class APIError(Exception):
    """A request that cannot be answered with scores: HTTP status, a message naming the problem, the field."""

    status: int
    message: str
    field: str | None = None

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
