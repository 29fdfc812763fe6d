"""The gateway under load and across a Triton kill/restart: nothing fails, nothing is answered twice or dropped."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import numpy as np
import pytest

from mxbai_triton.gateway.process import GatewayProcess
from tests.reference import reference_scores
from tests.wire import varied_request

pytestmark = pytest.mark.triton

CONCURRENCY = 16
REQUESTS_PER_STREAM = 45
CONTROL = ("Who wrote 'To Kill a Mockingbird'?", ["Harper Lee wrote it in 1960.", "Moby-Dick is by Melville.", ""])
# Each stream rotates over the three APIs: (path, body for query/documents, how to read raw-comparable scores).
ROUTES = (
    ("/v2/rerank", lambda q, d: {"model": "reranker", "query": q, "documents": d}, "results"),
    ("/v1/rerank", lambda q, d: {"query": q, "documents": d, "return_documents": False}, "results"),
    ("/rerank", lambda q, d: {"query": q, "texts": d, "raw_scores": True}, None),
)


def _by_index(path: str, body) -> dict[int, float]:
    items = body if path == "/rerank" else body["results"]
    return {r["index"]: r["score" if path == "/rerank" else "relevance_score"] for r in items}


@pytest.mark.slow
def test_sixteen_concurrent_clients_through_the_gateway_fail_nothing(served, oracle):
    expected_raw = reference_scores(oracle, *CONTROL)
    expected = {"/rerank": expected_raw, "/v2/rerank": oracle.normalize_scores(expected_raw)}
    expected["/v1/rerank"] = expected["/v2/rerank"]
    done, failures, deviations = [0], [], []

    async def stream(http: httpx.AsyncClient, index: int) -> None:
        for n in range(REQUESTS_PER_STREAM):
            path, body, _ = ROUTES[(index + n) % 3]
            query, documents = CONTROL if n % 5 == 0 else varied_request(index, n)
            response = await http.post(path, json=body(query, documents))
            if response.status_code != 200:
                failures.append((path, response.status_code, response.text))
            else:
                scores = _by_index(path, response.json())
                assert sorted(scores) == list(range(len(documents)))
                if n % 5 == 0:
                    ours = np.array([scores[i] for i in range(len(documents))])
                    deviations.append(float(np.max(np.abs(ours - np.asarray(expected[path])))))
                done[0] += 1

    async def run() -> float:
        limits = httpx.Limits(max_connections=CONCURRENCY)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=120, limits=limits) as http:
            started = time.monotonic()
            await asyncio.gather(*(stream(http, i) for i in range(CONCURRENCY)))
            return time.monotonic() - started

    with GatewayProcess(served.grpc_url, "reranker") as gateway:
        elapsed = asyncio.run(run())
        metrics = httpx.get(f"{gateway.url}/metrics").text
    assert failures == []
    assert done[0] == CONCURRENCY * REQUESTS_PER_STREAM
    assert [line for line in metrics.splitlines() if line.startswith("mxbai_gateway_errors_total")] == []
    assert max(deviations) <= 1e-4, f"control scores moved under load by {max(deviations):.2e}"
    print(f"gateway load: {done[0]} requests in {elapsed:.1f}s at concurrency {CONCURRENCY} over 3 APIs, 0 failed, "
          f"{len(deviations)} control runs, max deviation {max(deviations):.1e}")


@pytest.fixture
def restartable(tiny_repository):
    from mxbai_triton.model_repository.server import TritonServer

    server = TritonServer.on_free_ports(tiny_repository, stop_grace=0)
    with server:
        yield server


def test_every_request_is_answered_once_across_a_triton_kill_and_restart(restartable, oracle):
    queries = [f"question {i}: {'capital' if i % 2 else 'recipe'} number {i}" for i in range(40)]
    documents = ["Paris is the capital of France.", "Boil water, add salt.", "", "Goethe schrieb Faust."]
    expected = {q: oracle.normalize_scores(reference_scores(oracle, q, documents)) for q in queries}
    answers: dict[str, list[httpx.Response]] = {q: [] for q in queries}

    async def run(url: str) -> None:
        killed = asyncio.Event()
        limit = asyncio.Semaphore(4)
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            async def one(query: str):
                async with limit:
                    response = await http.post("/v2/rerank", json={"model": "rr", "query": query, "documents": documents})
                    answers[query].append(response)
                if sum(map(len, answers.values())) == 8:
                    killed.set()

            async def fault():
                await killed.wait()
                os.killpg(restartable.process.pid, signal.SIGKILL)  # 4 requests in flight
                restartable.process.wait()
                await asyncio.sleep(1.0)
                await asyncio.to_thread(restartable.start)

            await asyncio.gather(fault(), *(one(q) for q in queries))

    with GatewayProcess(restartable.grpc_url, "rr", "--api-retry-for", "30", "--api-timeout", "120") as gateway:
        asyncio.run(run(gateway.url))
        metrics = httpx.get(f"{gateway.url}/metrics").text
    assert all(len(a) == 1 for a in answers.values()), {q: len(a) for q, a in answers.items() if len(a) != 1}
    statuses = [a[0].status_code for a in answers.values()]
    # The gateway's own count: every request answered once, none twice, none silently dropped.
    for code in (200, 503):
        count = statuses.count(code)
        assert (f'mxbai_gateway_requests_total{{api="cohere",code="{code}"}} {count}.0' in metrics) == bool(count)
    answered = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                   if line.startswith("mxbai_gateway_requests_total{"))
    assert answered == len(queries)
    unavailable = [a[0].json()["message"] for a in answers.values() if a[0].status_code == 503]
    assert set(statuses) <= {200, 503} and all("no Triton endpoint could take the request" in m for m in unavailable)
    for query, (response,) in answers.items():
        if response.status_code == 200:
            scores = _by_index("/v2/rerank", response.json())
            np.testing.assert_allclose([scores[i] for i in range(len(documents))], expected[query], atol=1e-4, rtol=0)
    assert statuses.count(200) > 8, "nothing was answered after the restart"
    print(f"gateway kill/restart: {len(queries)} requests, {statuses.count(200)} scored, {len(unavailable)} clear 503s")
