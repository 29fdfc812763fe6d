"""The retry and failover rules of the client, on plain callables (the server-facing behaviour is in test_faults)."""

from __future__ import annotations

import asyncio
import time

import pytest

from mxbai_triton.client import RerankError, RetryPolicy
from mxbai_triton.client.resilience import EndpointPool, as_url_list, is_retryable

FAST = RetryPolicy(attempts=4, initial_backoff=0.0, cooldown=60.0)


def _pool(policy=FAST, urls=("a:1", "b:1", "c:1")):
    return EndpointPool({u: u for u in urls}, policy)


def _call(pool, fn):
    """`pool.acall` of a plain function of the endpoint."""
    async def attempt(url):
        return fn(url)

    return asyncio.run(pool.acall("x", attempt))


def test_requests_go_round_robin_over_healthy_endpoints():
    pool = _pool()
    assert [_call(pool, lambda url: url) for _ in range(6)] == ["a:1", "b:1", "c:1"] * 2


def test_a_refused_connection_fails_over_and_the_dead_endpoint_is_skipped_afterwards():
    pool = _pool()

    def call(url):
        if url == "a:1":
            raise ConnectionRefusedError("refused")
        return url

    assert _call(pool, call) == "b:1"
    assert sorted(_call(pool, call) for _ in range(4)) == ["b:1", "b:1", "c:1", "c:1"]
    assert (pool.stats.retries, pool.stats.failovers, pool.stats.per_endpoint["a:1"]) == (1, 1, 1)


def test_an_error_about_the_request_is_not_retried():
    pool = _pool()
    tries = []

    def call(url):
        tries.append(url)
        raise ValueError("bad request")

    with pytest.raises(RerankError, match="^x: ValueError: bad request$"):
        _call(pool, call)
    assert tries == ["a:1"]


def test_retries_stop_at_the_attempt_limit_with_the_last_error():
    pool = _pool(RetryPolicy(attempts=3, initial_backoff=0.0, cooldown=0.0), urls=("a:1",))
    with pytest.raises(RerankError, match=r"failed after 3 tries .* last error: ConnectionResetError: gone"):
        _call(pool, lambda url: (_ for _ in ()).throw(ConnectionResetError("gone")))
    assert pool.stats.attempts == 3 and pool.stats.failures == 1


def test_retries_stop_at_the_deadline():
    pool = _pool(RetryPolicy(attempts=1000, initial_backoff=0.05, max_backoff=0.05, deadline=0.5), urls=("a:1",))
    started = time.monotonic()
    with pytest.raises(RerankError, match="failed after"):
        _call(pool, lambda url: (_ for _ in ()).throw(ConnectionRefusedError("refused")))
    assert time.monotonic() - started < 1.0 and pool.stats.attempts < 30


def test_when_every_endpoint_is_down_the_one_back_soonest_is_tried():
    pool = _pool(RetryPolicy(attempts=2, initial_backoff=0.0, cooldown=60.0), urls=("a:1", "b:1"))
    pool.mark_down("a:1")
    time.sleep(0.01)
    pool.mark_down("b:1")
    assert pool.pick() == "a:1"


def test_grpc_unavailable_is_retryable_and_invalid_argument_is_not():
    from tritonclient.utils import InferenceServerException

    assert is_retryable(InferenceServerException("down", status="StatusCode.UNAVAILABLE"))
    assert not is_retryable(InferenceServerException("bad", status="StatusCode.INVALID_ARGUMENT"))
    assert not is_retryable(InferenceServerException("bad", status="400"))
    assert is_retryable(InferenceServerException("busy", status="503"))


def test_endpoint_lists_must_be_non_empty_and_distinct():
    assert as_url_list("h:1") == ["h:1"]
    with pytest.raises(ValueError, match="duplicate"):
        as_url_list(["h:1", "h:1"])
    with pytest.raises(ValueError, match="non-empty"):
        as_url_list([])


def test_concurrent_first_calls_share_one_config_read_and_its_failure():
    import asyncio

    from mxbai_triton.client import AsyncRerankClient
    from mxbai_triton.model_repository.server import free_port

    async def run():
        policy = RetryPolicy(attempts=3, initial_backoff=0.05, deadline=5.0)
        async with AsyncRerankClient(f"127.0.0.1:{free_port()}", model="m", retry=policy) as client:
            outcomes = await asyncio.gather(*(client.limits() for _ in range(5)), return_exceptions=True)
            return outcomes, client.stats

    outcomes, stats = asyncio.run(run())
    assert all(isinstance(o, RerankError) for o in outcomes)
    assert (stats.requests, stats.attempts) == (1, 3)  # one read with its retries, not five in turn
