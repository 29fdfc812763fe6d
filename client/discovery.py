"""Which rerank ensembles a Triton serves: its repository index, then each ready model's inputs and parameters."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from .loop import LoopThread
from .transport import RerankError, open_client, timeout_options

log = logging.getLogger(__name__)
T = TypeVar("T")

# A model is one of our rerank ensembles when it takes our text inputs and publishes our parameters
# (the tokenizer step has the same inputs but not the parameters).
RERANK_INPUTS = ("query", "documents")
RERANK_PARAMETERS = ("estimated_max", "max_documents_per_request")


# The next step for a user whose command found no server (rank, eval, perf).
NO_SERVER_HINT = "start one with `mxbai-triton serve REPOSITORY` (or `make demo` for a stand-in), or point --url at a running one"


class DiscoveryError(RerankError):
    """Triton could not be asked which models it serves: unreachable, or its index is a restricted API."""

    def __init__(self, message: str, *, restricted: bool = False):
        super().__init__(message, unavailable=not restricted)
        self.restricted = restricted


def _as_dict(message) -> dict:
    if isinstance(message, (dict, list)):
        return message
    from google.protobuf import json_format

    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def ready_models(index) -> list[str]:
    """Names of the READY models in a repository index (gRPC message or HTTP JSON), sorted."""
    index = _as_dict(index)
    entries = index if isinstance(index, list) else index.get("models", [])
    return sorted({entry["name"] for entry in entries if entry.get("state") == "READY"})


def is_reranker(config) -> bool:
    """True when a model config (gRPC message or HTTP JSON) has our BYTES inputs and our parameters."""
    config = _as_dict(config)
    config = config.get("config", config)
    dtypes = {tensor.get("name"): tensor.get("data_type") for tensor in config.get("input", [])}
    parameters = config.get("parameters", {})
    return all(dtypes.get(name) == "TYPE_STRING" for name in RERANK_INPUTS) and all(p in parameters for p in RERANK_PARAMETERS)


def not_served(name: str, served: Sequence[str], where: str = "here") -> str:
    """The one message for a model name nobody serves: it lists the ones that are."""
    return f"model {name!r} is not served {where}; served: {', '.join(served) or 'none'}"


def _discovery_error(url: str, error: BaseException) -> DiscoveryError:
    from .resilience import describe

    text = describe(error)
    restricted = "restricted" in text
    hint = " (Triton restricts its repository index to admin-token holders: name the model with --model)" if restricted else ""
    return DiscoveryError(f"cannot list the models of Triton at {url}: {text}{hint}", restricted=restricted)


def served_rerankers(url: str, *, protocol: str = "grpc", timeout: float = 10.0, loop: LoopThread | None = None) -> list[str]:
    """The rerank ensembles READY on the Triton at `url` ("host:port"), sorted; DiscoveryError when it cannot tell.

    `loop`: run on this loop thread (kept by the caller for several calls) instead of a new one."""
    async def ask() -> list[str]:
        client = open_client(url, protocol, timeout)
        try:
            return sorted(await served_rerankers_async(client, url, {}, protocol=protocol, timeout=timeout))
        finally:
            await client.close()

    if loop is not None:
        return loop.run(ask)
    own = LoopThread("mxbai-triton-discovery")
    try:
        return own.run(ask)
    finally:
        own.close()


async def served_rerankers_async(client, url: str, known: dict[str, bool], *, protocol: str = "grpc",
                                 timeout: float = 5.0) -> set[str]:
    """The rerank ensembles READY on an open asyncio tritonclient; `known` caches each name's verdict
    while it stays in the index (entries of names that left it are dropped)."""
    options = timeout_options(protocol, timeout)
    try:
        ready = ready_models(await client.get_model_repository_index(**options))
        for name in ready:
            if name not in known:
                known[name] = is_reranker(await client.get_model_config(name, **options))
    except Exception as error:  # noqa: BLE001 - any failure to ask is reported as one DiscoveryError
        raise _discovery_error(url, error) from None
    for name in set(known) - set(ready):
        del known[name]
    return {name for name in ready if known[name]}


def choose_model(urls: Sequence[str], requested: str | None, *, protocol: str = "grpc", timeout: float = 10.0,
                 loop: LoopThread | None = None) -> str:
    """The ensemble a command should use: `requested` when it is served, else the one served reranker.

    Raises ValueError naming the served ensembles (an unknown name, none, or several to choose from);
    DiscoveryError when no endpoint can list its models and no name was given. With a name and no
    index to check it against (restricted), the name is trusted.
    """
    problem: DiscoveryError | None = None
    for url in urls:
        try:
            served = served_rerankers(url, protocol=protocol, timeout=timeout, loop=loop)
            break
        except DiscoveryError as error:
            problem = error
    else:
        if requested:
            return requested
        if problem is None:
            raise ValueError("no Triton URL given")
        raise problem
    if requested:
        if requested not in served:
            raise ValueError(not_served(requested, served, f"at {url}"))
        return requested
    if len(served) == 1:
        return served[0]
    if not served:
        raise ValueError(f"no rerank ensemble is served at {url}")
    raise ValueError(f"{len(served)} rerank ensembles are served at {url}: {', '.join(served)}; choose one with --model")


def when_served(ask: Callable[[LoopThread], T], retry_for: float) -> T:
    """`ask(loop)` (a discovery call), asked again every 0.5 s for up to `retry_for` seconds while no server
    answers (one starting); the tries share one loop thread. Says at once that it waits, and how to wait
    less; gives up naming what to start."""
    deadline = time.monotonic() + retry_for
    said = False
    loop = LoopThread("mxbai-triton-discovery")
    try:
        while True:
            try:
                return ask(loop)
            except DiscoveryError as error:
                if error.restricted:
                    raise
                if time.monotonic() + 0.5 > deadline:
                    raise DiscoveryError(f"{error}; no server answered for {retry_for:g} s: {NO_SERVER_HINT}") from None
                if not said:
                    log.info("%s; waiting up to %g s for a server to start (--retry-for 0 fails at once)", error, retry_for)
                    said = True
                time.sleep(0.5)
    finally:
        loop.close()
