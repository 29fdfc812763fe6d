"""Overload and deadlines on a real tritonserver whose dispatch takes one request at a time and lets two wait: beyond
that bound requests are refused at once (counted by Triton) while accepted ones complete; a request past its deadline
is sent once and fails as a deadline. Each step waits on Triton's own counters, never on time."""

from __future__ import annotations

import threading

import pytest

from mxbai_triton.client import NO_RETRY, RerankClient, RerankError, RetryPolicy
from mxbai_triton.core.drain import IN_FLIGHT_GAUGE, PENDING_GAUGE
from mxbai_triton.core.errors import ErrorKind
from mxbai_triton.model_repository.metrics_port import read_counters
from tests.conftest import settled_stats
from tests.waiting import GUARD, wait_until
from tests.wire import model_statistics

pytestmark = pytest.mark.triton

NAME = "ovl"
# The scorer's batcher waits this long for a sub-batch to fill before it runs it (a one-row sub-batch never fills
# a batch of 16): every request holds the one dispatch instance for at least this long. Sending the next two and
# the three refusals takes well under a second; the test checks the bound is still full after them.
HOLD_S = 4.0
HELD = ["a short document"]


@pytest.fixture(scope="module")
def bounded(tiny_export, tmp_path_factory):
    """One dispatch instance and room for two waiting interactive requests: the admission bound, made small."""
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.core.serving import ServingLimits
    from mxbai_triton.model_repository.generate import generate_repository
    from mxbai_triton.model_repository.server import TritonServer

    spec = ModelSpec.load(tiny_export)
    limits = ServingLimits.for_model(spec, tokenizer_instances=1, interactive_queue_size=2, bulk_queue_size=1,
                                     queue_delay_us=int(HOLD_S * 1e6), queue_timeout_us=int(GUARD * 1e6))
    assert 1 not in limits.preferred_batch_sizes
    repository = generate_repository(tmp_path_factory.mktemp("bounded"), spec, target="portable", name=NAME,
                                     export_dir=tiny_export, limits=limits)
    with TritonServer.on_free_ports(repository, stop_grace=0) as server:
        yield server


def _dispatched(server) -> tuple[int]:
    stats = model_statistics(server, f"{NAME}_tokenizer").inference_stats
    return (stats.success.count + stats.fail.count,)


def _gauges(server) -> tuple[float, float]:
    totals = read_counters(server.metrics_url, (IN_FLIGHT_GAUGE, PENDING_GAUGE), model=f"{NAME}_tokenizer")
    return totals[IN_FLIGHT_GAUGE], totals[PENDING_GAUGE]


def test_beyond_the_queue_bound_requests_are_refused_at_once_before_any_work_and_accepted_ones_complete(bounded):
    client = RerankClient(bounded.grpc_url, model=NAME, retry=NO_RETRY, timeout=GUARD)
    answers: list = []

    def accepted():
        answers.append(client.scores("q", HELD))

    threads = [threading.Thread(target=accepted) for _ in range(3)]
    (before,) = settled_stats(lambda: _dispatched(bounded), 0)
    assert client.limits.max_documents > 0  # the config read is not a request under test
    try:
        # One at a time, each once the one before is seen where it should be: sent together, the third can reach
        # the queue before the first has left it for the dispatch instance, and be refused.
        for waiting, thread in enumerate(threads):
            thread.start()
            assert wait_until(lambda n=waiting: _gauges(bounded) == (1, n), GUARD, interval=0.02)
        # One request is being dispatched and two wait: the bound is full.
        refused = []
        for _ in range(3):
            with pytest.raises(RerankError, match="Exceeds maximum queue size") as caught:
                client.scores("q", ["a short one"])
            refused.append(caught.value.kind)
        assert refused == [ErrorKind.OVERLOADED] * 3
        assert _gauges(bounded) == (1, 2)  # still full: the refusals above were tried against the full bound
    finally:
        for thread in threads:
            thread.join(GUARD)
        client.close()
    assert [len(scores) for scores in answers] == [len(HELD)] * 3
    # Triton ran the three accepted requests only. (Triton 2.51 counts no queue-full refusal in its
    # metrics, REJECTED included: the gateway counts its own, the client its overloaded failures.)
    (after,) = settled_stats(lambda: _dispatched(bounded), before + 3)
    assert after - before == 3


def test_a_request_past_its_deadline_is_sent_once_and_the_caller_hears_a_deadline(bounded):
    (before,) = settled_stats(lambda: _dispatched(bounded), 0)
    # Retries allowed for what may be retried: a deadline is not among them.
    with RerankClient(bounded.grpc_url, model=NAME, retry=RetryPolicy(initial_backoff=0.0), timeout=HOLD_S / 4) as client:
        assert client.limits.max_documents > 0  # the config read is not the request under test
        with pytest.raises(RerankError, match="no answer before the request's deadline") as caught:
            client.scores("q", HELD)  # held in the scorer's queue for HOLD_S
        stats = client.stats
    assert caught.value.kind is ErrorKind.DEADLINE_EXCEEDED
    assert (stats.attempts - 1, stats.retries) == (1, 0)  # one try for the config, one for the request
    (after,) = settled_stats(lambda: _dispatched(bounded), before + 1)
    assert after - before == 1  # Triton saw the request once
