"""Fair scheduling and cancellation on a real tritonserver: small requests are served during a bulk one, a
caller's low priority yields, and abandoned requests stop sending sub-batches.

Bounds come from the server's own statistics (the scorer's executions) and from latencies measured
in the same test, never from wall-clock constants."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time

import numpy as np
import pytest

from mxbai_triton.client import NO_RETRY, AsyncRerankClient, RerankClient, RerankError
from mxbai_triton.model_repository.metrics_port import read_counters
from mxbai_triton.perf.workload import mixed_documents, synthetic_documents
from tests.conftest import settled_stats
from tests.reference import reference_scores

pytestmark = pytest.mark.triton

QUERY = "which documents talk about search relevance?"
SMALL = synthetic_documents(3, 40, seed=7)
BULK = mixed_documents(1000, 0.6, median=60, seed=3)
MEDIUM = mixed_documents(300, 0.6, median=60, seed=4)  # under the interactive token budget
ROWS = 8  # rows per scorer execution: the bulk request is ~170 sub-batches


@pytest.fixture(scope="module")
def server(tiny_export, tmp_path_factory, preprocessor):
    from mxbai_triton.core.cost import architecture_of, with_target_costs
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.core.serving import ServingLimits
    from mxbai_triton.model_repository.generate import generate_repository
    from mxbai_triton.model_repository.server import TritonServer

    spec = ModelSpec.load(tiny_export)
    limits = with_target_costs(ServingLimits.for_model(spec, max_batch_size=ROWS), architecture_of(spec.name, tiny_export), "cpu")
    # Bulk turns bounded at the estimated cost of ROWS rows of the bulk request's median prompt: sub-batches
    # of longer rows hold fewer rows, so the bulk request's sub-batches cost about the same.
    median = int(np.median([len(ids) for ids in preprocessor.encode(QUERY, BULK)]))
    limits = limits.with_overrides(bulk_sub_batch_seconds=limits.sub_batch_cost.seconds(ROWS, median))
    repository = generate_repository(tmp_path_factory.mktemp("fair-repository"), spec, target="portable", name="rr",
                                     export_dir=tiny_export, limits=limits)
    with TritonServer.on_free_ports(repository, stop_grace=0) as server:
        yield server


@pytest.fixture(scope="module")
def client(server):
    with RerankClient(server.grpc_url, model="rr", timeout=600) as client:
        client.scores(QUERY, BULK)  # warm-up: ONNX Runtime allocates for these shapes once
        yield client


def _latency(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _execution(server) -> tuple[int, float]:
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        stats = c.get_inference_statistics("rr_scorer").model_stats[0]
        return stats.execution_count, stats.inference_stats.compute_infer.ns / 1e9


def _counter(server, name: str, **labels) -> float:
    return read_counters(server.metrics_url, (f"mxbai_dispatch_{name}",), **labels)[f"mxbai_dispatch_{name}"]


def _wait_for(condition, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "the server did not get there"
        time.sleep(0.01)


class _Running:
    """A request in a thread; `finished` is its perf_counter() at the end."""

    def __init__(self, fn):
        self.finished: float | None = None
        self.result = None

        def run():
            self.result = fn()
            self.finished = time.perf_counter()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()


def _start_after_dispatch_began(server, fn) -> _Running:
    sent = _counter(server, "sub_batches")
    job = _Running(fn)
    _wait_for(lambda: _counter(server, "sub_batches") > sent + 1, 60)
    return job


def test_a_small_request_during_a_bulk_one_waits_for_at_most_the_bulk_sub_batch_in_execution(server, client, oracle):
    from mxbai_triton.perf.fairness_bench import sub_batch_executions

    idle = [_latency(lambda: client.scores(QUERY, SMALL)) for _ in range(10)]
    longest = max(seconds for _, seconds in sub_batch_executions(server, "rr", BULK))  # each one alone
    bulk = _start_after_dispatch_began(server, lambda: client.scores(QUERY, BULK))
    during, finished = [], []
    for _ in range(5):
        during.append(_latency(lambda: client.scores(QUERY, SMALL)))
        finished.append(time.perf_counter())
    bulk.thread.join()
    assert max(finished) < bulk.finished  # every small request completed before the bulk one
    # First come, first served it would wait for ~170 sub-batches; fair, for the one executing when it arrives.
    assert statistics.median(during) <= statistics.median(idle) + longest + (max(idle) - min(idle)), (during, idle, longest)
    np.testing.assert_allclose(bulk.result, reference_scores(oracle, QUERY, BULK), atol=1e-4, rtol=0)


def test_a_request_its_caller_marks_bulk_is_served_after_an_unmarked_one_sent_later(server, client):
    marked = _start_after_dispatch_began(server, lambda: client.scores(QUERY, MEDIUM, priority=2))
    unmarked = _Running(lambda: client.scores(QUERY, MEDIUM))
    marked.thread.join()
    unmarked.thread.join()
    assert unmarked.finished < marked.finished
    np.testing.assert_array_equal(marked.result, unmarked.result)


def test_a_bulk_request_past_its_deadline_stops_and_the_next_request_is_not_delayed(server, client):
    from mxbai_triton.model_repository.tokenizer_backend import TokenizerCore

    planned = len(TokenizerCore(server.repository + "/rr_tokenizer/1").plan([(QUERY, BULK, None)])[0].batches)
    executions, compute = _execution(server)
    alone = _latency(lambda: client.scores(QUERY, BULK))
    executions_after, compute_after = _execution(server)
    mean_execution = (compute_after - compute) / (executions_after - executions)
    idle = [_latency(lambda: client.scores(QUERY, SMALL)) for _ in range(5)]
    # Its gRPC deadline cancels the call when its Triton timeout passes: the dispatch stops on either.
    sent, skipped, requests = (_counter(server, n) for n in ("sub_batches", "skipped_sub_batches", "requests"))
    # Its config read and about ten of its ~170 sub-batches fit in this deadline, on a fast machine or a slow one.
    with RerankClient(server.grpc_url, model="rr", timeout=max(idle) + 10 * mean_execution, retry=NO_RETRY) as impatient:
        with pytest.raises(RerankError, match="no answer before the request's deadline"):
            impatient.scores(QUERY, BULK)
    _wait_for(lambda: _counter(server, "requests") > requests, alone)  # the dispatch has given up
    executions = _execution(server)[0]
    after = _latency(lambda: client.scores(QUERY, SMALL))
    assert _counter(server, "sub_batches") - sent < planned
    assert _counter(server, "skipped_sub_batches") - skipped > 0
    assert _counter(server, "skipped_sub_batches", reason="failed") == 0
    # Nothing of the abandoned request ran after it (counts can trail the answer: wait for the small one's).
    assert settled_stats(lambda: _execution(server), executions + 1)[0] == executions + 1
    # First come, first served, it would wait for the ~100 sub-batches the abandoned request had left.
    assert after <= 2 * max(idle) + 2 * mean_execution, (after, idle, mean_execution)


def test_cancelling_the_awaiting_task_stops_the_dispatch(server, client):
    cancelled, requests = _counter(server, "skipped_sub_batches", reason="cancelled"), _counter(server, "requests")

    async def cancel_midway():
        async with AsyncRerankClient(server.grpc_url, model="rr", timeout=600, retry=NO_RETRY) as impatient:
            task = asyncio.ensure_future(impatient.scores(QUERY, BULK))
            sent = _counter(server, "sub_batches")
            while _counter(server, "sub_batches") <= sent + 1:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(cancel_midway())
    _wait_for(lambda: _counter(server, "requests") > requests, 60)
    assert _counter(server, "skipped_sub_batches", reason="cancelled") - cancelled > 0


@pytest.fixture(scope="module")
def gateway(server):
    from mxbai_triton.gateway.process import GatewayProcess

    with GatewayProcess(server.grpc_url, "rr") as gateway:
        yield gateway


@pytest.mark.parametrize("priority, level", [(None, "interactive"), (0, "interactive"), (1, "bulk"), (7, "bulk")])
def test_the_gateways_priority_field_reaches_the_dispatch_with_cohere_s_meaning(server, gateway, priority, level):
    import httpx

    before = _counter(server, "requests", **{"class": level})
    body = {"model": "rr", "query": QUERY, "documents": SMALL, **({} if priority is None else {"priority": priority})}
    response = httpx.post(f"{gateway.url}/v2/rerank", json=body, timeout=60)
    assert response.status_code == 200, response.text
    assert _counter(server, "requests", **{"class": level}) == before + 1


def test_a_client_that_disconnects_from_the_gateway_stops_its_request_on_triton(server, gateway):
    import json
    import socket

    import httpx

    cancelled, requests = _counter(server, "skipped_sub_batches", reason="cancelled"), _counter(server, "requests")
    body = json.dumps({"query": QUERY, "documents": BULK}).encode()
    head = (f"POST /v1/rerank HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    sent = _counter(server, "sub_batches")
    with socket.create_connection(("127.0.0.1", gateway.port)) as connection:
        connection.sendall(head + body)
        # The caller goes away once its request is visibly being scored, not after a guessed time.
        _wait_for(lambda: _counter(server, "sub_batches") > sent + 1, 60)
    _wait_for(lambda: _counter(server, "requests") > requests, 60)  # the dispatch has given up
    assert _counter(server, "skipped_sub_batches", reason="cancelled") > cancelled
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'mxbai_gateway_requests_total{api="jina",code="499"} 1.0' in metrics
