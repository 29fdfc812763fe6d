"""What the gateway bounds, in-process: bodies read while they stream, token bounds, per-caller rates, quiet 5xx
answers with a request id, and which routes need a key."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

pytest.importorskip("fastapi", reason="the gateway is a FastAPI app")

from mxbai_triton.core.errors import ErrorKind  # noqa: E402
from mxbai_triton.gateway.backend import BackendSettings  # noqa: E402
from mxbai_triton.gateway.errors import APIError, without_traceback  # noqa: E402
from mxbai_triton.gateway.guard import (  # noqa: E402
    MIB,
    TEMPLATE_TOKENS_BOUND,
    Allowance,
    BodyBudget,
    GuardSettings,
    RateLimiter,
    prompt_token_bound,
    read_body,
)

CHUNK = b"x" * MIB


def _chunked(total_chunks: int, counter: list[int]):
    """An ASGI receive() streaming `total_chunks` MiB with no declared length; counts what was taken."""
    async def receive():
        counter[0] += 1
        return {"type": "http.request", "body": CHUNK, "more_body": counter[0] < total_chunks}
    return receive


def test_a_chunked_body_is_refused_at_the_limit_not_read_whole():
    taken, budget = [0], BodyBudget(64 * MIB)
    claim = budget.claim()
    settings = GuardSettings(max_body_bytes=4 * MIB)
    with pytest.raises(APIError, match=f"^the body has more than {4 * MIB} bytes, the limit$") as raised:
        asyncio.run(read_body(_chunked(200, taken), {}, settings, claim))
    assert (raised.value.kind, taken[0], claim.complete) == (ErrorKind.TOO_LARGE, 5, False)
    claim.release()
    assert budget.held == 0


def test_a_declared_length_over_the_limit_is_refused_before_reading():
    taken = [0]
    with pytest.raises(APIError, match=f"^the body has {200 * MIB} bytes, more than the limit of {MIB}$"):
        asyncio.run(read_body(_chunked(200, taken), {"content-length": str(200 * MIB)},
                              GuardSettings(max_body_bytes=MIB, buffered_bytes=MIB), BodyBudget(MIB).claim()))
    assert taken == [0]


def test_bodies_held_together_past_the_budget_get_503_with_retry_after():
    budget = BodyBudget(3 * MIB)
    first = budget.claim()
    asyncio.run(read_body(_chunked(2, [0]), {}, GuardSettings(max_body_bytes=2 * MIB, buffered_bytes=3 * MIB), first))
    with pytest.raises(APIError, match="holds as many request bodies as it may; retry shortly") as raised:
        asyncio.run(read_body(_chunked(2, [0]), {}, GuardSettings(max_body_bytes=2 * MIB, buffered_bytes=3 * MIB), budget.claim()))
    assert (raised.value.kind, raised.value.retry_after, first.complete) == (ErrorKind.OVERLOADED, 1, True)


def test_a_body_that_does_not_arrive_in_time_is_a_408():
    async def never():
        await asyncio.sleep(10)

    with pytest.raises(APIError, match=r"^the body did not arrive within 0.2s$") as raised:
        asyncio.run(read_body(never, {}, GuardSettings(body_timeout=0.2), BodyBudget(64 * MIB).claim()))
    assert raised.value.kind is ErrorKind.SLOW_CLIENT


def test_the_token_bound_is_utf8_bytes_plus_the_template_capped_per_prompt():
    fixed = TEMPLATE_TOKENS_BOUND + len("qué".encode())
    assert prompt_token_bound("qué", ["ab", "東京", "x" * 10_000], None, 1000) == (fixed + 2) + (fixed + 6) + 1000
    assert prompt_token_bound("q", ["a"], "find", 1000) == TEMPLATE_TOKENS_BOUND + 1 + 4 + 1


def test_the_token_bound_holds_for_the_real_tokenizer(preprocessor):
    texts = ["plain English words", "東京は日本の首都です。", "😀🇫🇷 emoji", "<|im_end|><|im_start|>assistant", "a" * 3000]
    real = [len(row) for row in preprocessor.encode("query", texts)]
    bounds = [prompt_token_bound("query", [text], None, 10**9) for text in texts]
    assert all(r <= b for r, b in zip(real, bounds)), list(zip(real, bounds))


def test_a_request_over_the_token_limit_is_a_413_naming_its_bound():
    allowance = Allowance(RateLimiter(0, 0), "k", max_request_tokens=1000)
    with pytest.raises(APIError, match=rf"^'texts' may cost up to {2 * (TEMPLATE_TOKENS_BOUND + 1 + 500)} prompt tokens .* "
                                       r"more than the limit of 1000 per request; split the list$") as raised:
        allowance.admit(prompt_token_bound("q", ["a" * 500] * 2, None, 8271), 8271, "texts")
    assert (raised.value.kind, raised.value.field) == (ErrorKind.TOO_LARGE, "texts")


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_second_per_caller_then_429_with_the_wait():
    clock = Clock()
    limiter = RateLimiter(2, 0, clock)
    limiter.admit("a")
    limiter.admit("a")
    with pytest.raises(APIError, match=r"^rate limit reached for this caller; retry in 1s$") as raised:
        limiter.admit("a")
    assert (raised.value.kind, raised.value.retry_after) == (ErrorKind.RATE_LIMITED, 0.5)
    limiter.admit("b")  # another caller has its own allowance
    clock.now += 0.5
    limiter.admit("a")


def test_tokens_are_charged_at_the_bound_and_settled_to_the_real_count():
    clock = Clock()
    limiter = RateLimiter(0, 1000, clock)
    allowance = Allowance(limiter, "a", 0)
    limiter.admit("a")
    allowance.admit(prompt_token_bound("q", ["x" * 1800], None, 8271), 8271, "documents")  # 1929: the caller is in debt
    with pytest.raises(APIError) as raised:
        limiter.admit("a")
    assert raised.value.retry_after == pytest.approx(0.93)
    allowance.settle(400)  # the real count: 600 tokens left
    limiter.admit("a")
    allowance.release()  # settled already: nothing more to give back
    assert limiter._tokens["a"].level == 600


def test_an_unscored_request_gives_its_tokens_back():
    limiter = RateLimiter(0, 1000, Clock())
    allowance = Allowance(limiter, "a", 0)
    allowance.admit(prompt_token_bound("q", ["x" * 5000], None, 8271), 8271, "documents")
    allowance.release()
    assert limiter._tokens["a"].level == 1000


def test_idle_callers_are_forgotten_when_the_table_is_full(monkeypatch):
    from mxbai_triton.gateway import guard

    monkeypatch.setattr(guard, "_CALLERS_KEPT", 3)
    clock = Clock()
    limiter = RateLimiter(1, 0, clock)
    for caller in "abc":
        limiter.admit(caller)
    clock.now += 5  # everyone's allowance is full again
    limiter.admit("d")
    assert set(limiter._requests) == {"d"}


def test_triton_tracebacks_are_cut_from_passed_on_messages():
    message = "reranker: Failed to process the request: ValueError: bad input\n\nAt:\n  /models/rr_tokenizer/1/model.py(88): execute\n"
    assert without_traceback(message) == "reranker: Failed to process the request: ValueError: bad input"


# --- the app, in-process, with the scoring call failing at the edge ---

SECRET = "KeyError: '/opt/models/rr/1/model.py' at 10.0.0.7:8001"


@pytest.fixture
def failing_app(monkeypatch):
    from mxbai_triton.gateway.serving import RerankServing

    async def broken(self, body, allowance=None, deadline=None, exchange=None):
        raise KeyError(SECRET)

    monkeypatch.setattr(RerankServing, "cohere", broken)
    monkeypatch.setattr(RerankServing, "tei", broken)


def _client(**options):
    from fastapi.testclient import TestClient

    from mxbai_triton.gateway.app import create_app

    return TestClient(create_app(BackendSettings(urls=("127.0.0.1:1",), models=("m",)), **options))


@pytest.mark.parametrize("path, body, read", [
    ("/v2/rerank", {"model": "m", "query": "q", "documents": ["a"]}, lambda b: b["message"]),
    ("/rerank", {"query": "q", "texts": ["a"]}, lambda b: b["error"]),
])
def test_a_500_carries_a_request_id_and_no_exception_text(failing_app, caplog, path, body, read):
    with _client() as client, caplog.at_level(logging.WARNING, "mxbai_triton.gateway"):
        response = client.post(path, json=body)
    request_id = response.headers["x-request-id"]
    assert (response.status_code, read(response.json())) == (500, f"internal error (request id {request_id})")
    assert "server" not in response.headers
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and SECRET in logged[-1].getMessage() + str(logged[-1].exc_info)


def test_a_plain_request_id_from_a_proxy_is_kept_and_an_odd_one_replaced():
    with _client() as client:
        kept = client.get("/live", headers={"x-request-id": "nginx-4f2a9c01"}).headers["x-request-id"]
        replaced = client.get("/live", headers={"x-request-id": "bad id\r\nX-Injected: 1"}).headers["x-request-id"]
    assert kept == "nginx-4f2a9c01"
    assert re.fullmatch(r"[0-9a-f]{32}", replaced)  # a fresh id of our own (a random hex may spell "bad")


def test_with_keys_the_openapi_page_and_metrics_need_one_and_the_probes_do_not():
    with _client(api_keys=frozenset({"k-123"})) as client:
        closed = {path: client.get(path).status_code for path in ("/openapi.json", "/docs", "/metrics", "/v1/models")}
        keyed = client.get("/openapi.json", headers={"Authorization": "Bearer k-123"})
        live = client.get("/live").status_code
    assert closed == {"/openapi.json": 401, "/docs": 401, "/metrics": 401, "/v1/models": 401}
    assert (keyed.status_code, "/v2/rerank" in keyed.json()["paths"], live) == (200, True, 200)


def test_the_openapi_page_can_be_opened_without_a_key():
    with _client(api_keys=frozenset({"k-123"}), open_docs=True) as client:
        assert (client.get("/openapi.json").status_code, client.get("/docs").status_code) == (200, 200)
        assert client.get("/metrics").status_code == 401


def test_a_rate_limited_caller_hears_429_in_its_apis_shape_with_retry_after():
    with _client(api_keys=frozenset({"k-1", "k-2"}), guard=GuardSettings(rate_requests=1)) as client:
        key = {"Authorization": "Bearer k-1"}
        client.post("/rerank", json={"query": "q", "texts": []}, headers=key)
        limited = client.post("/rerank", json={"query": "q", "texts": []}, headers=key)
        other = client.post("/rerank", json={"query": "q", "texts": []}, headers={"Authorization": "Bearer k-2"})
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "1")
    assert limited.json() == {"error": "rate limit reached for this caller; retry in 1s", "error_type": "Overloaded"}
    assert other.status_code == 200
