"""RerankClient and AsyncRerankClient: rank documents for a query through the Triton ensemble."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .transport import AsyncTransport, RerankError, ServerLimits, Transport

__all__ = ["AsyncRerankClient", "RankResult", "RerankClient", "RerankError", "rank_results", "sigmoid_normalize"]


@dataclass(frozen=True)
class RankResult:
    """One ranked document, as mxbai-rerank's `rank()` returns it."""

    index: int
    score: float
    document: str | None = None


def sigmoid_normalize(scores: np.ndarray, estimated_max: float) -> np.ndarray:
    """The reference's normalisation: sigmoid(score - estimated_max / 2)."""
    return 1.0 / (1.0 + np.exp(-(np.asarray(scores, dtype=np.float64) - estimated_max / 2)))


def rank_results(
    scores: np.ndarray, documents: Sequence[str], *, top_k: int | None = None, return_documents: bool = True
) -> list[RankResult]:
    """Sort by score descending, ties by index ascending; keep `top_k` (all when None)."""
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores)))[:top_k]
    return [
        RankResult(int(i), float(scores[i]), documents[i] if return_documents else None) for i in order
    ]


def _chunks(documents: Sequence[str], size: int) -> list[Sequence[str]]:
    return [documents[i:i + size] for i in range(0, len(documents), size)]


def _check(query: str, documents: Sequence[str]) -> None:
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {type(query).__name__}")
    if isinstance(documents, str) or not all(isinstance(d, str) for d in documents):
        raise TypeError("documents must be a sequence of str")


class RerankClient:
    """Synchronous client of one mxbai-triton ensemble.

    Args:
        url: "host:port" of the gRPC (default 8001) or HTTP (default 8000) endpoint.
        model: Ensemble name.
        protocol: "grpc" or "http".
        timeout: Seconds per request.
    """

    def __init__(self, url: str, *, model: str, protocol: str = "grpc", timeout: float = 60.0):
        self._transport = Transport(url, model, protocol, timeout)
        self._limits: ServerLimits | None = None

    @property
    def limits(self) -> ServerLimits:
        if self._limits is None:
            self._limits = self._transport.limits()
        return self._limits

    def scores(self, query: str, documents: Sequence[str], *, instruction: str | None = None, normalize: bool = False) -> np.ndarray:
        """Raw scores (logit "1" - logit "0") in input order; lists above the server limit are split."""
        _check(query, documents)
        if not documents:
            return np.zeros(0, dtype=np.float32)
        parts = [self._transport.infer(query, c, instruction) for c in _chunks(documents, self.limits.max_documents)]
        scores = np.concatenate(parts)
        return sigmoid_normalize(scores, self.limits.estimated_max) if normalize else scores

    def rank(
        self, query: str, documents: Sequence[str], *, top_k: int | None = None, instruction: str | None = None,
        return_documents: bool = True, normalize: bool = False,
    ) -> list[RankResult]:
        """Documents ranked for `query`, best first (ties by index)."""
        scores = self.scores(query, documents, instruction=instruction, normalize=normalize)
        return rank_results(scores, documents, top_k=top_k, return_documents=return_documents)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> "RerankClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncRerankClient:
    """asyncio twin of RerankClient; chunks of a long list are scored concurrently."""

    def __init__(self, url: str, *, model: str, protocol: str = "grpc", timeout: float = 60.0):
        self._transport = AsyncTransport(url, model, protocol, timeout)
        self._limits: ServerLimits | None = None

    async def limits(self) -> ServerLimits:
        if self._limits is None:
            self._limits = await self._transport.limits()
        return self._limits

    async def scores(self, query: str, documents: Sequence[str], *, instruction: str | None = None, normalize: bool = False) -> np.ndarray:
        _check(query, documents)
        if not documents:
            return np.zeros(0, dtype=np.float32)
        limits = await self.limits()
        parts = await asyncio.gather(*(
            self._transport.infer(query, c, instruction) for c in _chunks(documents, limits.max_documents)
        ))
        scores = np.concatenate(parts)
        return sigmoid_normalize(scores, limits.estimated_max) if normalize else scores

    async def rank(
        self, query: str, documents: Sequence[str], *, top_k: int | None = None, instruction: str | None = None,
        return_documents: bool = True, normalize: bool = False,
    ) -> list[RankResult]:
        scores = await self.scores(query, documents, instruction=instruction, normalize=normalize)
        return rank_results(scores, documents, top_k=top_k, return_documents=return_documents)

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> "AsyncRerankClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
