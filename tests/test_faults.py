"""Faults: the server dies and comes back mid-stream; every query is answered once, none is dropped."""

from __future__ import annotations

import asyncio
import os
import signal

import numpy as np
import pytest

from mxbai_triton.client import AsyncRerankClient, RerankClient, RerankError, RetryPolicy
from tests.waiting import GUARD

pytestmark = pytest.mark.triton

DOCUMENTS = ["Paris is the capital of France.", "Boil water, add salt.", "", "Goethe schrieb Faust.", "12,345.67"]
QUERIES = [f"question {i}: {'capital' if i % 2 else 'recipe'} number {i}" for i in range(48)]


@pytest.fixture
def restartable(tiny_repository):
    from mxbai_triton.model_repository.server import TritonServer

    server = TritonServer.on_free_ports(tiny_repository, stop_grace=0)
    with server:
        yield server


def _kill(server) -> None:
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()


def test_async_clients_answer_every_query_exactly_once_across_a_server_kill_and_restart(restartable, oracle):
    """A gRPC and an HTTP client at once, 4 requests in flight each, across one kill -9 and restart."""
    expected = {q: oracle.predict([q] * len(DOCUMENTS), DOCUMENTS).numpy() for q in QUERIES}
    protocols = {"grpc": restartable.grpc_url, "http": restartable.http_url}
    answers = {(p, q): [] for p in protocols for q in QUERIES}
    errors: list[BaseException] = []
    policy = RetryPolicy(attempts=30, initial_backoff=0.1, max_backoff=1.0, deadline=120.0, cooldown=0.2)
    killed = asyncio.Event()

    async def stream(protocol: str):
        async with AsyncRerankClient(protocols[protocol], model="rr", protocol=protocol, timeout=30,
                                     retry=policy) as client:
            limit = asyncio.Semaphore(4)

            async def one(query: str):
                async with limit:
                    try:
                        answers[protocol, query].append(await client.scores(query, DOCUMENTS))
                    except RerankError as error:
                        errors.append(error)
                    if sum(map(len, answers.values())) >= 16:
                        killed.set()

            await asyncio.gather(*(one(q) for q in QUERIES))
            return client.stats

    async def fault():
        await asyncio.wait_for(killed.wait(), GUARD)
        _kill(restartable)  # requests are in flight: 4 at a time on each protocol
        await asyncio.sleep(1.0)
        await asyncio.to_thread(restartable.start)

    async def run():
        _, *stats = await asyncio.gather(fault(), *(stream(p) for p in protocols))
        return dict(zip(protocols, stats))

    stats = asyncio.run(run())
    assert errors == []
    assert all(len(a) == 1 for a in answers.values()), {k: len(a) for k, a in answers.items() if len(a) != 1}
    for (_, query), (scores,) in answers.items():
        np.testing.assert_allclose(scores, expected[query], atol=1e-4, rtol=0)
    for protocol, calls in stats.items():
        assert calls.failures == 0 and calls.retries > 0  # each client felt the kill
        assert calls.requests == len(QUERIES) + 1  # one config read, then one request per query
        print(f"kill/restart ({protocol}): {len(QUERIES)} queries answered once, {calls.requests} calls, "
              f"{calls.attempts} tries, {calls.retries} retries, 0 errors")


def test_client_gives_a_clear_error_when_the_server_stays_down():
    from mxbai_triton.processes import free_port

    policy = RetryPolicy(attempts=3, initial_backoff=0.05, deadline=10.0)
    with RerankClient(f"127.0.0.1:{free_port()}", model="reranker", retry=policy) as client:
        with pytest.raises(RerankError, match=r"failed after 3 tries .* last error: .*(?i:connect)"):
            client.rank("q", ["d"])
        assert client.stats.attempts == 3 and client.stats.failures == 1


def test_client_does_not_retry_a_request_the_server_refuses(served):
    with RerankClient(served.grpc_url, model="no_such_model", retry=RetryPolicy(attempts=5)) as client:
        with pytest.raises(RerankError, match="no_such_model") as info:
            client.rank("q", ["d"])
        assert "tries" not in str(info.value)
        assert client.stats.attempts == 1 and client.stats.retries == 0


def test_a_killed_server_leaves_no_shared_memory_behind_once_stopped(tiny_repository):
    from pathlib import Path

    from mxbai_triton.model_repository.server import TritonServer

    server = TritonServer.on_free_ports(tiny_repository).start()
    regions = lambda: sorted(Path("/dev/shm").glob(f"{server.shm_prefix}*"))  # noqa: E731
    assert regions(), "the python backend should map its regions under our prefix"
    _kill(server)
    assert regions(), "a SIGKILL leaves the regions behind"
    server.stop()
    assert regions() == []
