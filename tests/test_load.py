"""Load: 16 concurrent async streams of 40 requests each on loopback; no request fails, a control query's scores hold."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from mxbai_triton.client import NO_RETRY, AsyncRerankClient
from tests.conftest import settled_stats
from tests.reference import reference_scores
from tests.wire import varied_request

pytestmark = pytest.mark.triton

CONCURRENCY = 16
REQUESTS_PER_STREAM = 40
CONTROL = ("Who wrote 'To Kill a Mockingbird'?", ["Harper Lee wrote it in 1960.", "Moby-Dick is by Melville.", ""])


def _server_counts(server) -> tuple[int, int]:
    import tritonclient.grpc as grpcclient

    # The dispatch step counts every request, whether it came through the ensemble or to the step directly.
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        stats = client.get_inference_statistics("reranker_tokenizer").model_stats[0].inference_stats
    return stats.success.count, stats.fail.count


def test_sixteen_concurrent_streams_fail_nothing_and_keep_control_scores(served, oracle):
    expected = reference_scores(oracle, *CONTROL)
    success_before, fail_before = _server_counts(served)
    done, failures, control_runs = [0], [], []

    async def stream(client: AsyncRerankClient, index: int) -> None:
        for n in range(REQUESTS_PER_STREAM):
            try:
                if n % 5 == 0:
                    control_runs.append(await client.scores(*CONTROL))
                else:
                    query, documents = varied_request(index, n)
                    assert len(await client.scores(query, documents)) == len(documents)
                done[0] += 1
            except Exception as error:  # noqa: BLE001 - every failure is counted and reported
                failures.append(repr(error))

    async def run() -> float:
        async with AsyncRerankClient(served.grpc_url, model="reranker", retry=NO_RETRY, timeout=120) as client:
            await client.limits()
            started = time.monotonic()
            await asyncio.gather(*(stream(client, i) for i in range(CONCURRENCY)))
            return time.monotonic() - started

    elapsed = asyncio.run(run())
    success, fail = settled_stats(lambda: _server_counts(served), success_before + CONCURRENCY * REQUESTS_PER_STREAM)
    assert failures == []
    assert (done[0], success - success_before, fail - fail_before) == (CONCURRENCY * REQUESTS_PER_STREAM,) * 2 + (0,)
    assert len(control_runs) == CONCURRENCY * ((REQUESTS_PER_STREAM + 4) // 5)
    deviation = max(float(np.max(np.abs(run - expected))) for run in control_runs)
    print(f"load: {done[0]} requests in {elapsed:.1f}s at concurrency {CONCURRENCY}, 0 failed, "
          f"{len(control_runs)} control runs, max deviation {deviation:.1e}")
    assert deviation <= 1e-4, f"control scores moved under load by {deviation:.2e}"
