"""The gateway's view of Triton: the served ensembles, one async gRPC client each, readiness, and Triton's errors as kinds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mxbai_triton.client.discovery import not_served
from mxbai_triton.client.rerank import AsyncRerankClient, RerankError, RetryPolicy, Scored
from mxbai_triton.client.transport import ServerLimits
from mxbai_triton.core.deadline import Deadline
from mxbai_triton.core.errors import ErrorKind, untagged

from .errors import APIError, without_traceback
from .registry import ModelRegistry

# What the gateway answers for each kind of failure Triton reports: the kind to raise and a message that
# names nothing of the server's insides (those go to the log). Kinds about the request pass Triton's message on.
_TRITON_FAILURES = {
    ErrorKind.BACKEND_UNAVAILABLE: (ErrorKind.BACKEND_UNAVAILABLE, "no Triton endpoint could take the request"),
    # Triton cancels what it was running when it stops: to the caller, the server was not there to finish it.
    ErrorKind.CANCELLED: (ErrorKind.BACKEND_UNAVAILABLE, "no Triton endpoint could take the request"),
    ErrorKind.OVERLOADED: (ErrorKind.OVERLOADED, "Triton's queue is full; retry shortly"),
    ErrorKind.RATE_LIMITED: (ErrorKind.OVERLOADED, "Triton's queue is full; retry shortly"),
}
_PASSED_ON = (ErrorKind.INVALID_INPUT, ErrorKind.TOO_LARGE)
# Seconds a caller refused for load is told to wait (Triton gives no Retry-After).
OVERLOAD_RETRY_AFTER = 1.0


@dataclass(frozen=True)
class BackendSettings:
    """Where Triton is, what to serve there, and how long a request may take.

    Args:
        urls: gRPC "host:port" of each Triton replica serving the same repository.
        models: Ensemble names to serve (the first answers requests that name no model); empty:
            every rerank ensemble Triton serves, found in its repository index.
        timeout: Seconds a request may take in all, retries included: its one deadline (then 504).
        retry_for: Seconds of retries while no Triton endpoint answers (then 503).
        refresh_every: Seconds between two looks at Triton's repository index.
    """

    urls: tuple[str, ...]
    models: tuple[str, ...] = ()
    timeout: float = 60.0
    retry_for: float = 10.0
    refresh_every: float = 5.0

    def __post_init__(self):
        if not self.urls or not all(self.urls):
            raise ValueError("--triton needs at least one host:port")
        if not all(self.models):
            raise ValueError("--model names must not be empty")
        if self.timeout <= 0 or self.retry_for < 0 or self.refresh_every <= 0:
            raise ValueError("--api-timeout and --api-refresh must be > 0 and --api-retry-for >= 0")
        if self.retry_for >= self.timeout:
            raise ValueError(f"--api-retry-for ({self.retry_for:g}s) must be shorter than --api-timeout "
                             f"({self.timeout:g}s), or an outage answers 504 instead of 503")


class TritonBackend:
    """Scores requests on Triton's ensembles over gRPC (one channel per endpoint, reused by every request)."""

    def __init__(self, settings: BackendSettings):
        import tritonclient.grpc.aio as grpc_aio

        self.settings = settings
        self._retry = RetryPolicy(attempts=1000, initial_backoff=0.1, max_backoff=1.0, deadline=settings.retry_for,
                                  cooldown=1.0)
        self.clients: dict[str, AsyncRerankClient] = {}
        # Clients of ensembles no longer served: requests may still be in flight on them; closed at shutdown.
        self._retired: list[AsyncRerankClient] = []
        self._probes = {url: grpc_aio.InferenceServerClient(url) for url in settings.urls}
        self.registry = ModelRegistry(self._probes, settings.models, refresh_every=settings.refresh_every,
                                      on_removed=self._retire)

    def _client(self, model: str) -> AsyncRerankClient:
        if model not in self.clients:
            self.clients[model] = AsyncRerankClient(list(self.settings.urls), model=model, protocol="grpc",
                                                    timeout=self.settings.timeout, retry=self._retry)
        return self.clients[model]

    def _retire(self, models: set[str]) -> None:
        # A model that comes back may have a new config: its next client reads the limits again.
        self._retired += [self.clients.pop(m) for m in models if m in self.clients]

    async def limits(self, model: str, deadline: Deadline) -> ServerLimits:
        """What the ensemble publishes (read once per client); APIError of the failure's kind."""
        try:
            return await self._client(model).limits(deadline)
        except RerankError as error:
            raise await self._api_error(model, error) from None

    async def score(self, model: str, query: str, documents: Sequence[str], instruction: str | None, *,
                    deadline: Deadline, priority: int = 0, truncate: str = "END", field: str = "documents",
                    request_id: str = "", trace_headers: dict[str, str] | None = None) -> Scored:
        """Raw scores and token counts in input order, before `deadline`; APIError of the failure's kind.

        Triton gets the deadline as the request's timeout, and cancelling this call (the HTTP client
        went away) cancels the request on Triton. `field` is what the caller's API calls the document
        list, for Triton's messages about it. `request_id` is Triton's request id; `trace_headers` continue
        the request's trace there.
        """
        try:
            scored = await self._client(model).scored(query, documents, instruction=instruction, priority=priority,
                                                      truncate=truncate, deadline=deadline, request_id=request_id,
                                                      trace_headers=trace_headers)
        except (TypeError, ValueError) as error:  # what the client refuses before sending (e.g. lone surrogates)
            raise APIError(ErrorKind.INVALID_INPUT, str(error)) from None
        except RerankError as error:
            raise await self._api_error(model, error, field) from None
        check_scored(scored, len(documents))
        return scored

    async def _api_error(self, model: str, error: RerankError, field: str = "documents") -> APIError:
        kind = error.kind
        if kind is ErrorKind.NOT_FOUND:  # unloaded since the last look at the index
            await self.registry.refresh(since=time.monotonic())
            return APIError(ErrorKind.NOT_FOUND, not_served(model, self.registry.models), "model")
        if kind in _PASSED_ON:
            message = untagged(without_traceback(str(error)))
            return APIError(kind, message.replace("documents[", f"{field}[") if field != "documents" else message, field)
        if kind is ErrorKind.DEADLINE_EXCEEDED:
            return APIError(kind, f"no answer from Triton within {self.settings.timeout:g}s", detail=str(error))
        if kind in _TRITON_FAILURES:
            kind, message = _TRITON_FAILURES[kind]
            retry_after = OVERLOAD_RETRY_AFTER if kind is ErrorKind.OVERLOADED else None
            return APIError(kind, message, detail=str(error), retry_after=retry_after)
        # 5xx messages name no endpoint and quote no server text: those go to the log (`detail`).
        return APIError(ErrorKind.BACKEND_ERROR, "Triton failed the request", detail=str(error))

    async def ready(self) -> dict[str, bool]:
        """Per endpoint: whether it answers and every served ensemble is ready on it (none served: not ready)."""
        async def probe(client) -> bool:
            models = self.registry.models
            if not models:
                return False
            try:
                ready = await asyncio.wait_for(asyncio.gather(*(client.is_model_ready(m) for m in models)), timeout=2.0)
                return all(ready)
            except Exception:  # noqa: BLE001 - any failure means "not ready"
                return False

        answers = await asyncio.gather(*(probe(c) for c in self._probes.values()))
        return dict(zip(self._probes, answers))

    async def close(self) -> None:
        for client in [*self.clients.values(), *self._retired]:
            await client.close()
        for probe in self._probes.values():
            await probe.close()


def check_scored(scored: Scored, documents: int) -> None:
    """A score per document, every one finite, or APIError backend_error: never a short or made-up ranking."""
    if len(scored.scores) != documents or len(scored.token_counts) != documents:
        raise APIError(ErrorKind.BACKEND_ERROR, "Triton answered unusable scores",
                       detail=f"Triton answered {len(scored.scores)} scores for {documents} documents")
    if not np.isfinite(scored.scores).all():
        bad = np.flatnonzero(~np.isfinite(scored.scores)).tolist()
        raise APIError(ErrorKind.BACKEND_ERROR, "Triton answered unusable scores",
                       detail=f"Triton answered non-finite scores for documents {bad}")
