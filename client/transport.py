"""One transport adapter over tritonclient's asyncio gRPC and HTTP clients."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mxbai_triton.core.wire import PRIORITY_BULK, PRIORITY_INTERACTIVE, PRIORITY_PARAMETER

PROTOCOLS = ("grpc", "http")


class RerankError(RuntimeError):
    """A failed request, with the server's message (or the transport's) in it.

    `unavailable` is True when no server could take it (connection or server failures through every
    try), False when a server answered with an error about the request; `status` is the last
    error's status ("StatusCode.INVALID_ARGUMENT", "400", ...) when it had one.
    """

    def __init__(self, message: str, *, unavailable: bool = False, status: str | None = None):
        super().__init__(message)
        self.unavailable = unavailable
        self.status = status


@dataclass(frozen=True)
class Scored:
    """One call's answer: raw scores in input order, and each document's prompt tokens when the server reports them."""

    scores: np.ndarray
    token_counts: np.ndarray | None = None

    @staticmethod
    def from_result(result) -> "Scored":
        scores = result.as_numpy("scores").reshape(-1)
        counts = result.as_numpy("token_counts")  # None from servers older than this output
        return Scored(scores, None if counts is None else counts.reshape(-1).astype(np.int64))

    @staticmethod
    def concatenate(parts: Sequence["Scored"]) -> "Scored":
        counts = [p.token_counts for p in parts]
        return Scored(
            np.concatenate([p.scores for p in parts]),
            None if any(c is None for c in counts) else np.concatenate(counts),
        )


# The reference's longest prompt (max_length 8192 + 79 template tokens): what ensembles generated
# before they published `max_prompt_tokens` truncate to.
REFERENCE_MAX_PROMPT_TOKENS = 8192 + 79


@dataclass(frozen=True)
class ServerLimits:
    """What the ensemble's config parameters tell a client.

    `dispatch_model` is the ensemble's step, which takes the same request and, unlike the ensemble,
    sees its cancellation; None for servers that do not name it (then requests go to the ensemble).

    `max_prompt_tokens` is the longest prompt (template + query + document) the tokenizer step
    builds: a document whose prompt reaches it was cut to fit, or fills it to the last token.
    """

    max_documents: int
    estimated_max: float
    max_prompt_tokens: int = REFERENCE_MAX_PROMPT_TOKENS
    dispatch_model: str | None = None


# Triton's request priority: 0 the default (the server decides by size), 1 interactive, 2 bulk.
PRIORITIES = (0, PRIORITY_INTERACTIVE, PRIORITY_BULK)


@dataclass(frozen=True)
class Call:
    """How one request is sent: to which model, at what Triton priority, and its timeout in seconds."""

    model: str
    priority: int = 0
    timeout: float = 60.0

    def options(self, grpc: bool) -> dict:
        """tritonclient infer() keywords: Triton's priority and timeout, the same priority as the dispatch's parameter."""
        options: dict = {"timeout": max(1, int(self.timeout * 1e6))}
        if self.priority:
            options["priority"] = self.priority
            options["parameters"] = {PRIORITY_PARAMETER: self.priority}
        if grpc:
            options["client_timeout"] = self.timeout
        return options


def _module(protocol: str):
    """tritonclient's asyncio module for `protocol`."""
    if protocol == "grpc":
        import tritonclient.grpc.aio as module
    elif protocol == "http":
        import tritonclient.http.aio as module
    else:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    return module


def open_client(url: str, protocol: str, timeout: float):
    """An asyncio tritonclient for `url` (call on the loop that will use it: gRPC channels bind to it)."""
    module = _module(protocol)
    if protocol == "http":
        return module.InferenceServerClient(url, conn_timeout=timeout)
    return module.InferenceServerClient(url)


def timeout_options(protocol: str, timeout: float) -> dict:
    """The per-call deadline keywords of tritonclient's metadata calls (gRPC takes one; HTTP has its connection's)."""
    return {"client_timeout": timeout} if protocol == "grpc" else {}


def _text_tensor(module, name: str, values: Sequence[bytes]):
    data = np.array(values, dtype=np.object_)
    tensor = module.InferInput(name, [len(values)], "BYTES")
    tensor.set_data_from_numpy(data)
    return tensor


def build_inputs(module, query: bytes, documents: Sequence[bytes], instruction: bytes | None):
    """BYTES tensors of UTF-8 text the caller has already encoded."""
    inputs = [_text_tensor(module, "query", [query]), _text_tensor(module, "documents", documents)]
    if instruction is not None:
        inputs.append(_text_tensor(module, "instruction", [instruction]))
    return inputs


def limits_from_config(config) -> ServerLimits:
    """Parse ServerLimits from a model config (protobuf message over gRPC, dict over HTTP)."""
    if not isinstance(config, dict):
        from google.protobuf import json_format

        config = json_format.MessageToDict(config, preserving_proto_field_name=True)
    config = config.get("config", config)
    params = {k: v.get("string_value") for k, v in config.get("parameters", {}).items()}
    try:
        return ServerLimits(int(params["max_documents_per_request"]), float(params["estimated_max"]),
                            int(params.get("max_prompt_tokens") or REFERENCE_MAX_PROMPT_TOKENS), params.get("dispatch_model"))
    except KeyError as missing:
        raise RerankError(f"model {config.get('name')!r} is not an mxbai-triton ensemble (no parameter {missing})") from None


class AsyncTransport:
    """gRPC/HTTP calls to one ensemble on one server; errors propagate unchanged (the caller classifies)."""

    def __init__(self, url: str, model: str, protocol: str, timeout: float):
        self.module = _module(protocol)
        self.url, self.protocol, self.model, self.timeout = url, protocol, model, timeout
        self.client = open_client(url, protocol, timeout)

    async def limits(self) -> ServerLimits:
        return limits_from_config(await self.client.get_model_config(self.model, **timeout_options(self.protocol, self.timeout)))

    async def infer(self, call: Call, query: bytes, documents: Sequence[bytes], instruction: bytes | None) -> Scored:
        inputs = build_inputs(self.module, query, documents, instruction)
        try:
            result = await asyncio.wait_for(
                self.client.infer(call.model, inputs, **call.options(self.protocol == "grpc")), call.timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no answer from {self.url} within {call.timeout:g}s") from None
        return Scored.from_result(result)

    async def close(self) -> None:
        await self.client.close()
