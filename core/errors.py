"""One error taxonomy for every stage: the kinds of failure, and what each HTTP API, gRPC and a retrying client make of them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from .telemetry import without_request_id

# The APIs whose error shapes the gateway speaks: Cohere, Jina/vLLM (OpenAI style), TEI, NVIDIA NIM.
APIS = ("cohere", "jina", "tei", "nim")


class ErrorKind(str, Enum):
    """What went wrong, said once where it happens; statuses and shapes are derived from it (KINDS)."""

    INVALID_INPUT = "invalid_input"
    TOO_LARGE = "too_large"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    SLOW_CLIENT = "slow_client"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    CANCELLED = "cancelled"
    BACKEND_UNAVAILABLE = "backend_unavailable"
    BACKEND_ERROR = "backend_error"
    INTERNAL = "internal"


class Retry(str, Enum):
    """Whether a client may send the request again, and when."""

    NEVER = "never"
    # Refused for load: only after Retry-After (or a backoff), before the deadline, and within the retry budget.
    AFTER_WAIT = "after Retry-After, within the retry budget"
    # Nothing was computed (no connection, a server stopping): another endpoint, with backoff, within the budget.
    ELSEWHERE = "on another endpoint, within the retry budget"


@dataclass(frozen=True)
class KindRule:
    """How one kind is answered.

    `http` is the status of Cohere and Jina/vLLM; `tei` and `nim` differ where those servers answer
    another status for the same case (TEI: 422 for a wrong body, 413 for a too-long input; NIM: 422
    for a wrong body, 400 for a too-long passage). `openai_type` is the `type` of the Jina/vLLM and NIM
    bodies; `tei_type` TEI's `error_type`; `grpc` the gRPC status code's name.
    """

    meaning: str
    http: int
    openai_type: str
    tei_type: str
    grpc: str
    retry: Retry
    tei: int | None = None
    nim: int | None = None

    def status(self, api: str) -> int:
        return {"tei": self.tei, "nim": self.nim}.get(api) or self.http

    def error_type(self, api: str) -> str | None:
        """The type name `api`'s error body carries (Cohere's body has none)."""
        return {"tei": self.tei_type, "cohere": None}.get(api, self.openai_type)


KINDS: dict[ErrorKind, KindRule] = {
    ErrorKind.INVALID_INPUT: KindRule(
        "the body is not JSON, a field has a wrong type or value, a text is not valid UTF-8",
        400, "BadRequestError", "Validation", "INVALID_ARGUMENT", Retry.NEVER, tei=422, nim=422),
    ErrorKind.TOO_LARGE: KindRule(
        "more documents, body bytes or prompt tokens than a limit allows; with truncation refused "
        "(NIM `truncate: NONE`, TEI `truncate: false`), a document longer than the model takes",
        413, "BadRequestError", "Validation", "INVALID_ARGUMENT", Retry.NEVER, nim=400),
    ErrorKind.UNAUTHORIZED: KindRule(
        "no API key or a wrong one (`Authorization: Bearer KEY`)",
        401, "AuthenticationError", "Unauthorized", "UNAUTHENTICATED", Retry.NEVER),
    ErrorKind.NOT_FOUND: KindRule(
        "the model is not served (the message lists the served ones)",
        404, "NotFoundError", "Validation", "NOT_FOUND", Retry.NEVER),
    ErrorKind.SLOW_CLIENT: KindRule(
        "the body did not arrive within --api-body-timeout seconds",
        408, "TimeoutError", "Validation", "DEADLINE_EXCEEDED", Retry.NEVER),
    ErrorKind.RATE_LIMITED: KindRule(
        "over the caller's --api-rate-requests or --api-rate-tokens; Retry-After says when",
        429, "RateLimitError", "Overloaded", "RESOURCE_EXHAUSTED", Retry.AFTER_WAIT),
    ErrorKind.OVERLOADED: KindRule(
        "refused at once, before any work: the admission bound of its class is full (requests or tokens "
        "waiting), Triton's queue is full, or the gateway holds --api-buffered-mib of bodies; Retry-After",
        503, "ServiceUnavailableError", "Overloaded", "RESOURCE_EXHAUSTED", Retry.AFTER_WAIT),
    ErrorKind.DEADLINE_EXCEEDED: KindRule(
        "the request's deadline (--api-timeout) passed before its answer",
        504, "TimeoutError", "Backend", "DEADLINE_EXCEEDED", Retry.NEVER),
    ErrorKind.CANCELLED: KindRule(
        "the client went away; its work on Triton was cancelled (logged, nobody reads the answer)",
        499, "CancelledError", "Backend", "CANCELLED", Retry.NEVER),
    ErrorKind.BACKEND_UNAVAILABLE: KindRule(
        "no Triton endpoint took the request within --api-retry-for seconds (down, restarting, draining), or "
        "no rerank ensemble is served",
        503, "ServiceUnavailableError", "Unhealthy", "UNAVAILABLE", Retry.ELSEWHERE),
    ErrorKind.BACKEND_ERROR: KindRule(
        "Triton failed the request or answered unusable scores",
        502, "InternalServerError", "Backend", "INTERNAL", Retry.NEVER),
    ErrorKind.INTERNAL: KindRule(
        "an unexpected failure in the gateway; the message carries the request id, the log the details",
        500, "InternalServerError", "Backend", "INTERNAL", Retry.NEVER),
}

# Our python models tag an error's message with its kind ("too_large: ..."), because Triton's error
# codes cannot say it: a python model has UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE,
# UNSUPPORTED, ALREADY_EXISTS and CANCELLED only (no RESOURCE_EXHAUSTED, no "too large").
# Triton may put the model's name or the request id before it ("rr_tokenizer: ", "[request id: 7] ").
_TAG = re.compile(r"(?:^|: |\] )(" + "|".join(k.value for k in ErrorKind) + r"): ")
# Triton's own refusal when a model's queue holds its max_queue_size (core src/scheduler_utils.cc), UNAVAILABLE.
TRITON_QUEUE_FULL = "Exceeds maximum queue size"
# What Triton answers (NOT_FOUND) for a model it is unloading, as it does while it stops: the model is not
# gone from the repository, the server is going away; a model it never had "is not found".
TRITON_UNLOADING = "has no available versions"
# Triton's statuses, as tritonclient reports them over gRPC ("StatusCode.X") and HTTP ("400").
_BY_STATUS = {
    "INVALID_ARGUMENT": ErrorKind.INVALID_INPUT, "400": ErrorKind.INVALID_INPUT,
    "NOT_FOUND": ErrorKind.NOT_FOUND, "404": ErrorKind.NOT_FOUND,
    "UNAUTHENTICATED": ErrorKind.UNAUTHORIZED, "PERMISSION_DENIED": ErrorKind.UNAUTHORIZED, "401": ErrorKind.UNAUTHORIZED,
    "DEADLINE_EXCEEDED": ErrorKind.DEADLINE_EXCEEDED, "504": ErrorKind.DEADLINE_EXCEEDED,
    "RESOURCE_EXHAUSTED": ErrorKind.OVERLOADED, "429": ErrorKind.RATE_LIMITED,
    "UNAVAILABLE": ErrorKind.BACKEND_UNAVAILABLE, "503": ErrorKind.BACKEND_UNAVAILABLE,
    "CANCELLED": ErrorKind.CANCELLED,
}


def tagged(kind: ErrorKind, message: str) -> str:
    """`message` carrying `kind` through a transport that has no code for it (Triton's errors)."""
    return f"{kind.value}: {message}"


def untagged(message: str) -> str:
    """`message` without a kind tag, and without whatever Triton put before it (the model's name, the request id)."""
    match = _TAG.search(message)
    return message[match.end():] if match else without_request_id(message)


def kind_of_triton(status: str | None, message: str) -> ErrorKind:
    """The kind of an error Triton (or the connection to it) answered.

    A kind tag in the message wins (our models set it); Triton's full queue is an overload, not an
    outage; a status the table does not name (UNKNOWN, INTERNAL, 500) is Triton failing the request.
    """
    match = _TAG.search(message or "")
    if match:
        return ErrorKind(match.group(1))
    if TRITON_QUEUE_FULL in (message or ""):
        return ErrorKind.OVERLOADED
    if TRITON_UNLOADING in (message or ""):
        return ErrorKind.BACKEND_UNAVAILABLE
    code = (status or "").removeprefix("StatusCode.")
    return _BY_STATUS.get(code, ErrorKind.BACKEND_ERROR)


def markdown_table() -> str:
    """The table as docs/errors.md shows it (generated; tests/test_errors.py keeps the page equal to this)."""
    rows = ["| kind | meaning | Cohere, Jina/vLLM | TEI (`error_type`) | NIM | OpenAI-style `type` | gRPC | retry |",
            "|---|---|---:|---|---:|---|---|---|"]
    for kind, rule in KINDS.items():
        rows.append(f"| `{kind.value}` | {rule.meaning} | {rule.http} | {rule.status('tei')} `{rule.tei_type}` | "
                    f"{rule.status('nim')} | `{rule.openai_type}` | `{rule.grpc}` | {rule.retry.value} |")
    return "\n".join(rows)
