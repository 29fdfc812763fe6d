"""The retry and failover rules of the client, on plain callables and a driven clock (the server-facing behaviour is in
test_faults and test_overload)."""

from __future__ import annotations

import asyncio

import pytest

from mxbai_triton.client import RerankError, RetryPolicy
from mxbai_triton.client.resilience import EndpointPool, as_url_list, error_kind
from mxbai_triton.core.deadline import Deadline
from mxbai_triton.core.errors import KINDS, ErrorKind, Retry, tagged
from tests.waiting import GUARD

FAST = RetryPolicy(attempts=4, initial_backoff=0.0, cooldown=60.0)


class Clock:
    """Time that moves only when a test moves it."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _pool(policy=FAST, urls=("a:1", "b:1", "c:1"), clock=None):
    return EndpointPool({u: u for u in urls}, policy, clock=clock or Clock())


def _call(pool, fn, deadline: Deadline | None = None):
    """`pool.acall` of a plain function of the endpoint."""
    async def attempt(url):
        return fn(url)

    return asyncio.run(pool.acall("x", attempt, deadline or Deadline.none(pool.clock)))


def _raise(error: BaseException):
    raise error


def _triton(status: str, message: str = "refused"):
    from tritonclient.utils import InferenceServerException

    return InferenceServerException(message, status=status)


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
        _call(pool, lambda url: _raise(ConnectionResetError("gone")))
    assert pool.stats.attempts == 3 and pool.stats.failures == 1


def test_no_try_starts_after_the_retry_window():
    clock = Clock()
    pool = _pool(RetryPolicy(attempts=1000, initial_backoff=0.0, deadline=0.5), urls=("a:1",), clock=clock)

    def call(url):
        clock.now += 0.1  # each try takes 0.1 s
        raise ConnectionRefusedError("refused")

    with pytest.raises(RerankError, match="failed after 5 tries"):
        _call(pool, call)


def test_a_request_whose_deadline_passed_is_sent_once_and_fails_as_a_deadline():
    clock = Clock()
    pool = _pool(clock=clock)

    def call(url):
        clock.now += 2.0  # the server took longer than the request may take, then said it was unavailable
        raise _triton("StatusCode.UNAVAILABLE", "Request timeout expired")

    with pytest.raises(RerankError, match="no answer before the request's deadline") as caught:
        _call(pool, call, Deadline.after(1.0, clock))
    assert caught.value.kind is ErrorKind.DEADLINE_EXCEEDED
    assert pool.stats.attempts == 1


def test_a_timeout_is_not_retried():
    pool = _pool()
    with pytest.raises(RerankError) as caught:
        _call(pool, lambda url: _raise(asyncio.TimeoutError()))
    assert caught.value.kind is ErrorKind.DEADLINE_EXCEEDED and pool.stats.attempts == 1


def test_a_retry_that_could_not_start_before_the_deadline_is_not_attempted():
    clock = Clock()
    pool = _pool(RetryPolicy(attempts=5, initial_backoff=2.0, max_backoff=2.0), clock=clock)
    with pytest.raises(RerankError):
        _call(pool, lambda url: _raise(ConnectionRefusedError("refused")), Deadline.after(1.0, clock))
    assert pool.stats.attempts == 1


def test_overload_refusals_are_retried_only_within_the_budget():
    clock = Clock()
    policy = RetryPolicy(attempts=8, initial_backoff=0.0, budget_ratio=0.1, budget_window=10.0, budget_min=2)
    pool = _pool(policy, clock=clock)
    overloaded = set()

    def call(url):  # each request's first try is refused for load; a retry would be answered
        clock.now += 0.01
        request = pool.stats.requests
        if request not in overloaded:
            overloaded.add(request)
            raise _triton("StatusCode.UNAVAILABLE", "Exceeds maximum queue size")
        return url

    outcomes = []
    for _ in range(50):
        try:
            outcomes.append(_call(pool, call))
        except RerankError as error:
            outcomes.append(error.kind)
    # 50 requests may add 10 % (5) retries; the other 45 refusals reach the caller as overloaded.
    assert (pool.stats.retries, pool.stats.budget_refused) == (5, 45)
    assert outcomes.count(ErrorKind.OVERLOADED) == 45
    assert pool.stats.attempts == 55


def test_the_retry_budget_refills_as_its_window_slides():
    clock = Clock()
    pool = _pool(RetryPolicy(attempts=3, initial_backoff=0.0, budget_ratio=0.0, budget_min=1, budget_window=10.0),
                 urls=("a:1", "b:1"), clock=clock)
    busy = {"a:1"}

    def call(url):
        if url in busy:
            raise _triton("StatusCode.UNAVAILABLE", "Exceeds maximum queue size")
        return url

    assert _call(pool, call) == "b:1"  # the one retry of the window
    with pytest.raises(RerankError):
        _call(pool, call)  # a:1 again, and no retry left
    clock.now += 10.5
    assert _call(pool, call) == "b:1"


def test_a_try_that_found_no_server_is_retried_elsewhere_without_spending_the_budget():
    pool = _pool(RetryPolicy(attempts=3, initial_backoff=0.0, budget_ratio=0.0, budget_min=0), urls=("a:1", "b:1"))

    def call(url):
        if url == "a:1":
            raise ConnectionRefusedError("refused")
        return url

    assert [_call(pool, call) for _ in range(3)] == ["b:1"] * 3
    assert pool.stats.budget_refused == 0


ERRORS = [
    # (the failure, its kind): Triton's statuses over gRPC and HTTP, our tags, broken connections
    (_triton("StatusCode.UNAVAILABLE", "failed to connect"), ErrorKind.BACKEND_UNAVAILABLE),
    (_triton("StatusCode.UNAVAILABLE", "[request id: <id_unknown>] Exceeds maximum queue size"), ErrorKind.OVERLOADED),
    (_triton("StatusCode.UNAVAILABLE", tagged(ErrorKind.BACKEND_UNAVAILABLE, "the server is draining")),
     ErrorKind.BACKEND_UNAVAILABLE),
    (_triton("StatusCode.INVALID_ARGUMENT", "rr_tokenizer: " + tagged(ErrorKind.TOO_LARGE, "documents[3] ...")),
     ErrorKind.TOO_LARGE),
    (_triton("StatusCode.INVALID_ARGUMENT", "'documents' is empty"), ErrorKind.INVALID_INPUT),
    (_triton("400", "bad"), ErrorKind.INVALID_INPUT),
    (_triton("503", "busy"), ErrorKind.BACKEND_UNAVAILABLE),
    (_triton("StatusCode.RESOURCE_EXHAUSTED", "busy"), ErrorKind.OVERLOADED),
    (_triton("StatusCode.NOT_FOUND", "Request for unknown model: 'x' is not found"), ErrorKind.NOT_FOUND),
    (_triton("StatusCode.NOT_FOUND", "Request for unknown model: 'rr_tokenizer' has no available versions"),
     ErrorKind.BACKEND_UNAVAILABLE),  # a stopping server unloads its models
    (_triton("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded"), ErrorKind.DEADLINE_EXCEEDED),
    (_triton("StatusCode.CANCELLED", "cancelled"), ErrorKind.CANCELLED),
    (_triton("StatusCode.UNKNOWN", "Stream removed"), ErrorKind.BACKEND_UNAVAILABLE),
    (_triton("StatusCode.INTERNAL", "scorer failed"), ErrorKind.BACKEND_ERROR),
    (ConnectionRefusedError("refused"), ErrorKind.BACKEND_UNAVAILABLE),
    (asyncio.TimeoutError(), ErrorKind.DEADLINE_EXCEEDED),
    (ValueError("bug"), ErrorKind.INTERNAL),
]


@pytest.mark.parametrize("error, kind", ERRORS, ids=lambda v: v.value if isinstance(v, ErrorKind) else type(v).__name__)
def test_each_failure_has_the_kind_its_status_and_message_say(error, kind):
    assert error_kind(error, Deadline.none()) is kind


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_a_failure_is_retried_exactly_when_the_table_allows_it(kind):
    pool = _pool(RetryPolicy(attempts=2, initial_backoff=0.0))
    with pytest.raises(RerankError):
        _call(pool, lambda url: _raise(RerankError("no", kind=kind)))
    assert pool.stats.attempts == (1 if KINDS[kind].retry is Retry.NEVER else 2)


def test_when_every_endpoint_is_down_the_one_back_soonest_is_tried():
    clock = Clock()
    pool = _pool(RetryPolicy(attempts=2, initial_backoff=0.0, cooldown=60.0), urls=("a:1", "b:1"), clock=clock)
    pool.mark_down("a:1")
    clock.now += 0.01
    pool.mark_down("b:1")
    assert pool.pick() == "a:1"


def test_endpoint_lists_must_be_non_empty_and_distinct():
    assert as_url_list("h:1") == ["h:1"]
    with pytest.raises(ValueError, match="duplicate"):
        as_url_list(["h:1", "h:1"])
    with pytest.raises(ValueError, match="non-empty"):
        as_url_list([])


def test_concurrent_first_calls_share_one_config_read_and_its_failure():
    from mxbai_triton.client import AsyncRerankClient
    from mxbai_triton.processes import free_port

    async def run():
        policy = RetryPolicy(attempts=3, initial_backoff=0.05, deadline=5.0)
        async with AsyncRerankClient(f"127.0.0.1:{free_port()}", model="m", retry=policy) as client:
            outcomes = await asyncio.gather(*(client.limits() for _ in range(5)), return_exceptions=True)
            return outcomes, client.stats

    outcomes, stats = asyncio.run(run())
    assert all(isinstance(o, RerankError) for o in outcomes)
    assert (stats.requests, stats.attempts) == (1, 3)  # one read with its retries, not five in turn


def test_closing_the_loop_fails_a_call_still_waiting_and_refuses_later_ones():
    import threading

    from mxbai_triton.client.loop import LoopClosed, LoopThread

    loop, outcome = LoopThread(), []
    started = threading.Event()

    async def never_answered():
        started.set()
        await asyncio.Event().wait()

    def caller():
        try:
            loop.run(never_answered)
        except LoopClosed as error:
            outcome.append(error)

    thread = threading.Thread(target=caller)
    thread.start()
    assert started.wait(GUARD)
    loop.close()
    thread.join(GUARD)
    assert not thread.is_alive() and len(outcome) == 1
    with pytest.raises(LoopClosed):
        loop.run(never_answered)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_request_in_flight_when_its_client_is_closed_fails_as_cancelled_instead_of_hanging(protocol):
    import socket
    import threading

    from mxbai_triton.client import NO_RETRY, RerankClient

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        client = RerankClient(f"127.0.0.1:{silent.getsockname()[1]}", model="rr", protocol=protocol, timeout=600,
                              retry=NO_RETRY)
        errors = []

        def caller():
            try:
                client.scores("q", ["d"])
            except RerankError as error:
                errors.append(error)

        thread = threading.Thread(target=caller)
        thread.start()
        silent.settimeout(GUARD)
        connection, _ = silent.accept()  # the request is on its way
        client.close()
        thread.join(GUARD)
        connection.close()
        client.close()  # a second close does nothing
    assert not thread.is_alive() and [e.kind for e in errors] == [ErrorKind.CANCELLED]
