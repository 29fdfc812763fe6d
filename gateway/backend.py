"""The gateway's view of Triton: the served ensembles, one async gRPC client each, readiness, and Triton's errors as HTTP statuses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mxbai_triton.client.discovery import not_served
from mxbai_triton.client.rerank import AsyncRerankClient, RerankError, RetryPolicy, Scored
from mxbai_triton.client.transport import ServerLimits

from .errors import APIError, without_traceback
from .registry import ModelRegistry

# Triton's statuses for "the request is wrong" (the tokenizer's RequestError is INVALID_ARG).
_BAD_REQUEST_STATUSES = frozenset({"StatusCode.INVALID_ARGUMENT", "400"})
# Triton's answer for a model it does not serve (never loaded, or unloaded).
_MODEL_GONE_STATUS = "StatusCode.NOT_FOUND"


@dataclass(frozen=True)
class BackendSettings:
    """Where Triton is, what to serve there, and how long a request may take.

    Args:
        urls: gRPC "host:port" of each Triton replica serving the same repository.
        models: Ensemble names to serve (the first answers requests that name no model); empty:
            every rerank ensemble Triton serves, found in its repository index.
        timeout: Seconds a request may take in all, retries included (then 504).
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

    @property
    def models(self) -> tuple[str, ...]:
        return self.registry.models

    async def resolve(self, name: str | None) -> str:
        """The ensemble a request names (the default one when it names none)."""
        return await self.registry.resolve(name)

    def _client(self, model: str) -> AsyncRerankClient:
        if model not in self.clients:
            self.clients[model] = AsyncRerankClient(list(self.settings.urls), model=model, protocol="grpc",
                                                    timeout=self.settings.timeout, retry=self._retry)
        return self.clients[model]

    def _retire(self, models: set[str]) -> None:
        # A model that comes back may have a new config: its next client reads the limits again.
        self._retired += [self.clients.pop(m) for m in models if m in self.clients]

    async def score(
        self, model: str, query: str, documents: Sequence[str], instruction: str | None, *, field: str = "documents",
        priority: int = 0, admit: Callable[[ServerLimits], None] | None = None,
    ) -> tuple[Scored, ServerLimits]:
        """Raw scores and token counts in input order; APIError with the status the failure deserves.

        One deadline covers the config read and the scoring; Triton gets it as the request's timeout,
        and cancelling this call (the HTTP client went away) cancels the request on Triton. `field` is
        what the caller's API calls the document list, for the error message; `admit` may refuse the
        request (APIError) once the ensemble's limits are known, before it is sent.
        """
        async def run() -> tuple[Scored, ServerLimits]:
            client = self._client(model)
            limits = await client.limits()
            if len(documents) > limits.max_documents:
                raise APIError(
                    413, f"'{field}' has {len(documents)} items, more than the limit of {limits.max_documents} "
                         "per request; split the list", field)
            if admit is not None:
                admit(limits)
            scored = await client.scored(query, documents, instruction=instruction, priority=priority)
            check_scored(scored, len(documents))
            return scored, limits

        return await self._call(model, run())

    async def _call(self, model: str, awaitable):
        try:
            return await asyncio.wait_for(awaitable, self.settings.timeout)
        except asyncio.TimeoutError:
            raise APIError(504, f"no answer from Triton within {self.settings.timeout:g}s") from None
        except (TypeError, ValueError) as error:  # what the client refuses before sending (e.g. lone surrogates)
            raise APIError(400, str(error)) from None
        except RerankError as error:
            # 5xx messages name no endpoint and quote no server text: those go to the log (`detail`).
            if error.unavailable:
                raise APIError(503, "no Triton endpoint could take the request", detail=str(error)) from None
            if error.status == _MODEL_GONE_STATUS:  # unloaded since the last look at the index
                await self.registry.refresh(since=time.monotonic())
                raise APIError(404, not_served(model, self.models), "model") from None
            if error.status in _BAD_REQUEST_STATUSES:
                raise APIError(400, without_traceback(str(error))) from None
            raise APIError(502, "Triton failed the request", detail=str(error)) from None

    async def ready(self) -> dict[str, bool]:
        """Per endpoint: whether it answers and every served ensemble is ready on it (none served: not ready)."""
        async def probe(client) -> bool:
            if not self.models:
                return False
            try:
                ready = await asyncio.wait_for(
                    asyncio.gather(*(client.is_model_ready(m) for m in self.models)), timeout=2.0)
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
    """A score per document, every one finite, or APIError 502: never a short or made-up ranking."""
    if len(scored.scores) != documents or len(scored.token_counts) != documents:
        raise APIError(502, "Triton answered unusable scores",
                       detail=f"Triton answered {len(scored.scores)} scores for {documents} documents")
    if not np.isfinite(scored.scores).all():
        bad = np.flatnonzero(~np.isfinite(scored.scores)).tolist()
        raise APIError(502, "Triton answered unusable scores", detail=f"Triton answered non-finite scores for documents {bad}")
