"""The first stage's candidates reranked through served ensembles, as bulk-class requests, each request timed."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mxbai_triton.client.bulk import completed
from mxbai_triton.client.rerank import AsyncRerankClient, RetryPolicy
from mxbai_triton.core.wire import PRIORITY_BULK

from .collection import Collection, Run


@dataclass
class Timing:
    """One model's pass: requests (one per query), documents scored, wall time, and each request's latency."""

    concurrency: int
    requests: int = 0
    documents: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        p50, p95 = np.percentile(self.latencies, [50, 95]) if self.latencies else (0.0, 0.0)
        return {"requests": self.requests, "documents": self.documents, "concurrency": self.concurrency,
                "seconds": round(self.seconds, 3), "docs_per_s": round(self.documents / self.seconds, 1) if self.seconds else 0.0,
                "latency_p50_ms": round(1000 * float(p50), 1), "latency_p95_ms": round(1000 * float(p95), 1)}


async def rerank(client: AsyncRerankClient, collection: Collection, candidates: Run, *, concurrency: int,
                 instruction: str | None = None, clock: Callable[[], float] = time.perf_counter) -> tuple[Run, Timing]:
    """Each query's candidates scored by the served model (one request per query, `concurrency` in flight)."""
    async def score(query: str):
        documents = list(candidates[query])
        texts = [collection.documents[d].reranked_text() for d in documents]
        started = clock()
        scores = await client.scores(collection.queries[query], texts, instruction=instruction, priority=PRIORITY_BULK)
        return query, documents, scores, clock() - started

    run: Run = {}
    timing = Timing(concurrency)
    started = clock()
    async for query, documents, scores, latency in completed([q for q in candidates if candidates[q]], score, concurrency):
        run[query] = {d: float(s) for d, s in zip(documents, scores)}
        timing.requests += 1
        timing.documents += len(documents)
        timing.latencies.append(latency)
    timing.seconds = clock() - started
    return {q: run[q] for q in candidates if q in run}, timing


def rerank_with_each(urls: Sequence[str], models: Sequence[str], collection: Collection, candidates: Run, *, protocol: str,
                     timeout: float, retry: RetryPolicy, concurrency: int, instruction: str | None = None,
                     on_done: Callable[[str, Timing], None] = lambda model, timing: None) -> dict[str, tuple[Run, Timing]]:
    """rerank() through each model in turn (one model's timing is its own), on one event loop."""
    import asyncio

    async def run_all() -> dict[str, tuple[Run, Timing]]:
        results = {}
        for model in models:
            async with AsyncRerankClient(list(urls), model=model, protocol=protocol, timeout=timeout, retry=retry) as client:
                await client.limits()  # read before the clock starts
                results[model] = await rerank(client, collection, candidates, concurrency=concurrency, instruction=instruction)
            on_done(model, results[model][1])
        return results

    return asyncio.run(run_all())
