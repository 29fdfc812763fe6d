"""RerankClient and AsyncRerankClient: rank documents for a query through the Triton ensemble."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mxbai_triton.core.deadline import Deadline
from mxbai_triton.core.errors import ErrorKind
from mxbai_triton.core.ranking import rank_order, sigmoid_normalize
from mxbai_triton.core.wire import PRIORITIES

from .loop import LoopClosed, LoopThread
from .resilience import NO_RETRY, CallStats, EndpointPool, RetryPolicy, as_url_list
from .transport import AsyncTransport, Call, RerankError, Scored, ServerLimits

__all__ = [
    "AsyncRerankClient", "NO_RETRY", "RankResult", "RerankClient", "RerankError", "RetryPolicy", "Scored",
    "rank_results", "sigmoid_normalize",
]


@dataclass(frozen=True)
class RankResult:
    """One ranked document, as mxbai-rerank's `rank()` returns it."""

    index: int
    score: float
    document: str | None = None


def rank_results(
    scores: np.ndarray, documents: Sequence[str], *, top_k: int | None = None, return_documents: bool = True
) -> list[RankResult]:
    """Sort by score descending, ties by index ascending; keep `top_k` (all when None)."""
    order = rank_order(scores, top_k)
    return [
        RankResult(int(i), float(scores[i]), documents[i] if return_documents else None) for i in order
    ]


_NOTHING_SCORED = Scored(np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64))


def _chunks(documents: Sequence[bytes], size: int) -> list[Sequence[bytes]]:
    return [documents[i:i + size] for i in range(0, len(documents), size)]


def _utf8(text: str, name: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"'{name}' has a lone surrogate at character {error.start} and cannot be sent as UTF-8"
        ) from None


def _encode_request(
    query: str, documents: Sequence[str], instruction: str | None, priority: int = 0
) -> tuple[bytes, list[bytes], bytes | None]:
    """UTF-8 bytes of the request, each text encoded once; refuses what the server would refuse, before any request leaves."""
    if isinstance(priority, bool) or priority not in PRIORITIES:
        raise ValueError(f"priority must be 0 (the server decides by size), 1 (interactive) or 2 (bulk), got {priority!r}")
    if not isinstance(query, str):
        raise TypeError(f"'query' must be a str, got {type(query).__name__}")
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
        raise TypeError(f"'documents' must be a sequence of str, got {type(documents).__name__}")
    for i, document in enumerate(documents):
        if not isinstance(document, str):
            raise TypeError(f"'documents[{i}]' must be a str, got {type(document).__name__}")
    if instruction is not None and not isinstance(instruction, str):
        raise TypeError(f"'instruction' must be a str or None, got {type(instruction).__name__}")
    return (
        _utf8(query, "query"),
        [_utf8(d, f"documents[{i}]") for i, d in enumerate(documents)],
        None if instruction is None else _utf8(instruction, "instruction"),
    )


class AsyncRerankClient:
    """Client of one mxbai-triton ensemble (asyncio); RerankClient runs this same code synchronously.

    Args:
        url: "host:port" of the gRPC (default 8001) or HTTP (default 8000) endpoint, or a list of
            them (replicas of one repository): requests go round-robin over the healthy ones.
        model: Ensemble name.
        protocol: "grpc" or "http".
        timeout: Seconds a request may take in all, retries included: its one deadline, which Triton
            also gets as the request's timeout (work past it is dropped there too).
        retry: Retries of requests that no server worked on (down, restarting) or that one refused
            for load, within the deadline and a retry budget (RetryPolicy); NO_RETRY turns them off.

    Chunks of a list longer than the server's per-request limit are scored concurrently; cancelling
    the awaiting task cancels the requests on the server.
    """

    def __init__(
        self, url: str | Sequence[str], *, model: str, protocol: str = "grpc", timeout: float = 60.0,
        retry: RetryPolicy = RetryPolicy(),
    ):
        self.model = model
        self.timeout = timeout
        self._pool = EndpointPool({u: AsyncTransport(u, model, protocol, timeout) for u in as_url_list(url)}, retry)
        self._limits: ServerLimits | None = None
        self._limits_read: asyncio.Future | None = None

    @property
    def stats(self) -> CallStats:
        """Requests, tries, retries and failovers so far."""
        return self._pool.stats

    async def limits(self, deadline: Deadline | None = None) -> ServerLimits:
        """What the ensemble publishes (read once, shared by concurrent first callers; a failed read is not kept)."""
        if self._limits is None:
            # Concurrent first calls share one read and its outcome (a lock would make each waiter
            # spend its own retry window in turn while the server is down).
            if self._limits_read is None or self._limits_read.done():
                deadline = deadline or self.deadline()
                self._limits_read = asyncio.ensure_future(
                    self._pool.acall(f"cannot read config of model {self.model!r}", lambda t: t.limits(deadline), deadline))
            # shield: a caller's deadline cancels its wait, not the read the others wait for.
            self._limits = await asyncio.shield(self._limits_read)
        return self._limits

    def deadline(self) -> Deadline:
        """A new request's deadline: `timeout` from now."""
        return Deadline.after(self.timeout)

    async def scored(self, query: str, documents: Sequence[str], *, instruction: str | None = None, priority: int = 0,
                     truncate: str = "END", deadline: Deadline | None = None, request_id: str = "",
                     trace_headers: dict[str, str] | None = None) -> Scored:
        """Raw scores, prompt token counts and timings; lists above the server limit are split.

        `priority` is Triton's: 0 lets the server decide by the request's size, 2 marks it bulk work
        (served after interactive requests, a few sub-batches at a time), 1 interactive. `truncate`
        "NONE" refuses (RerankError, kind too_large) a request with a document the model would cut,
        after tokenizing and before any scoring; "END" cuts it as the reference does. `deadline`: the
        caller's (default: `timeout` from now), shared by every chunk and try. `request_id` becomes
        Triton's request id (a list split in n calls: "<id>.c0" ... "<id>.c<n-1>"); `trace_headers`
        (W3C `traceparent`, `tracestate`) continue the caller's trace on Triton.
        """
        started = time.monotonic()
        query_bytes, documents_bytes, instruction_bytes = _encode_request(query, documents, instruction, priority)
        if not documents_bytes:
            return dataclasses.replace(_NOTHING_SCORED, request_id=request_id)
        deadline = deadline or self.deadline()
        limits = await self.limits(deadline)
        # The ensemble's dispatch step: it sees a cancellation, the ensemble does not.
        call = Call(limits.dispatch_model, priority, deadline, truncate, request_id, trace_headers or {})
        chunks = _chunks(documents_bytes, limits.max_documents)
        calls = [call] * len(chunks) if len(chunks) == 1 or not request_id else [
            dataclasses.replace(call, request_id=f"{request_id}.c{i}") for i in range(len(chunks))]
        scored = Scored.concatenate(await asyncio.gather(*(
            self._pool.acall(self.model, lambda t, chunk=chunk, c=c: t.infer(c, query_bytes, chunk, instruction_bytes),
                             deadline)
            for chunk, c in zip(chunks, calls)
        )), request_id)
        return dataclasses.replace(scored, timings=scored.timings.with_total(time.monotonic() - started))

    async def scores(
        self, query: str, documents: Sequence[str], *, instruction: str | None = None, normalize: bool = False, priority: int = 0,
    ) -> np.ndarray:
        """Raw scores (logit "1" - logit "0") in input order, or the reference's normalised ones."""
        scores = (await self.scored(query, documents, instruction=instruction, priority=priority)).scores
        return sigmoid_normalize(scores, (await self.limits()).estimated_max) if normalize and len(scores) else scores

    async def rank(
        self, query: str, documents: Sequence[str], *, top_k: int | None = None, instruction: str | None = None,
        return_documents: bool = True, normalize: bool = False, priority: int = 0,
    ) -> list[RankResult]:
        """Documents ranked for `query`, best first (ties by index)."""
        scores = await self.scores(query, documents, instruction=instruction, normalize=normalize, priority=priority)
        return rank_results(scores, documents, top_k=top_k, return_documents=return_documents)

    async def close(self) -> None:
        for transport in self._pool.endpoints.values():
            await transport.close()

    async def __aenter__(self) -> "AsyncRerankClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


class RerankClient:
    """Synchronous client of one mxbai-triton ensemble: AsyncRerankClient run on a private event loop.

    Same arguments, methods and results as AsyncRerankClient; safe to share between threads (their
    requests run concurrently), and usable from code that already runs an event loop.
    """

    def __init__(
        self, url: str | Sequence[str], *, model: str, protocol: str = "grpc", timeout: float = 60.0,
        retry: RetryPolicy = RetryPolicy(),
    ):
        self._loop = LoopThread()
        try:
            self._client = self._loop.run(lambda: _created(url, model, protocol, timeout, retry))
        except BaseException:
            self._loop.close()
            raise
        self.model, self.timeout = model, timeout

    @property
    def stats(self) -> CallStats:
        """Requests, tries, retries and failovers so far."""
        return self._client.stats

    @property
    def limits(self) -> ServerLimits:
        return self._run(self._client.limits)

    def scored(self, query: str, documents: Sequence[str], *, instruction: str | None = None, priority: int = 0,
               truncate: str = "END", request_id: str = "", trace_headers: dict[str, str] | None = None) -> Scored:
        """See AsyncRerankClient.scored."""
        return self._run(lambda: self._client.scored(query, documents, instruction=instruction, priority=priority,
                                                          truncate=truncate, request_id=request_id,
                                                          trace_headers=trace_headers))

    def scores(
        self, query: str, documents: Sequence[str], *, instruction: str | None = None, normalize: bool = False, priority: int = 0,
    ) -> np.ndarray:
        """See AsyncRerankClient.scores."""
        return self._run(lambda: self._client.scores(query, documents, instruction=instruction, normalize=normalize,
                                                          priority=priority))

    def rank(
        self, query: str, documents: Sequence[str], *, top_k: int | None = None, instruction: str | None = None,
        return_documents: bool = True, normalize: bool = False, priority: int = 0,
    ) -> list[RankResult]:
        """Documents ranked for `query`, best first (ties by index), as mxbai-rerank's rank() returns them."""
        return self._run(lambda: self._client.rank(query, documents, top_k=top_k, instruction=instruction,
                                                        return_documents=return_documents, normalize=normalize,
                                                        priority=priority))

    def _run(self, make):
        try:
            return self._loop.run(make)
        except LoopClosed:
            raise RerankError("the client was closed before this request was answered",
                              kind=ErrorKind.CANCELLED) from None

    def close(self) -> None:
        """Close the connections (again: nothing); a request still running on another thread fails with kind
        `cancelled`."""
        self._loop.close(last=self._client.close)

    def __enter__(self) -> "RerankClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


async def _created(url, model: str, protocol: str, timeout: float, retry: RetryPolicy) -> AsyncRerankClient:
    """An AsyncRerankClient made on the running loop (its aio channels belong to it)."""
    return AsyncRerankClient(url, model=model, protocol=protocol, timeout=timeout, retry=retry)
