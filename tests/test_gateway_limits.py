"""The gateway's bounds over real sockets in front of a real tritonserver: a 200 MB chunked body, slow and
many clients, per-key rates, token limits, quiet 5xx, where the metrics are, a 20 MB document."""

from __future__ import annotations

import math
import select
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from mxbai_triton.gateway.process import GatewayProcess
from mxbai_triton.processes import free_port
from tests.reference import reference_scores
from tests.waiting import GUARD, wait_until

MIB = 1 << 20
QUERY = "Who wrote 'To Kill a Mockingbird'?"


def _program_pid(gateway: GatewayProcess) -> int:
    """The gateway's own process: the supervisor's one child."""
    supervisor = gateway.process.pid
    return int(Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()[0])


def _memory_kib(pid: int, field: str) -> int:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1])


def _post_chunked(port: int, total: int) -> tuple[bytes, int]:
    """POST /v2/rerank with a chunked body of `total` bytes, sending until the server answers or hangs up:
    the answer's first bytes, and how many body bytes went out."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v2/rerank HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")
    data = b'{"model": "reranker", "query": "q", "documents": ["' + b"a" * (MIB - 48)
    chunk = b"%x\r\n%s\r\n" % (len(data), data)
    sent, answer = 0, b""
    try:
        while sent < total and b"\r\n\r\n" not in answer:
            readable, writable, _ = select.select([sock], [sock], [], 10)
            if readable:
                received = sock.recv(65536)
                if not received:
                    break
                answer += received
            elif writable:
                sock.sendall(chunk)
                sent += len(data)
        sock.settimeout(10)
        while received := sock.recv(65536):
            answer += received
    except OSError:
        pass  # the server closed the connection while body bytes were still on their way
    finally:
        sock.close()
    return answer, sent


@pytest.mark.triton
def test_a_200_mb_chunked_body_is_refused_at_the_limit_and_the_gateway_stays_up_and_small(served):
    with GatewayProcess(served.grpc_url, "reranker") as gateway:
        pid = _program_pid(gateway)
        peak_before = _memory_kib(pid, "VmHWM")
        answer, sent = _post_chunked(gateway.port, 200 * MIB)
        peak_growth = (_memory_kib(pid, "VmHWM") - peak_before) * 1024
        live = httpx.get(f"{gateway.url}/live").status_code
        scored = httpx.post(f"{gateway.url}/v2/rerank", json={"model": "reranker", "query": QUERY, "documents": ["a", "b"]})
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b'{"message":"the body has more than 67108864 bytes, the limit"}' in answer
    assert sent < 80 * MIB, f"{sent / MIB:.0f} MiB went out before the answer: the body was read past the limit"
    assert peak_growth < 100 * MIB, f"the gateway's peak memory grew by {peak_growth / MIB:.0f} MiB"
    assert (live, scored.status_code) == (200, 200)


def _slow(port: int, parts: list[bytes], gap: float) -> tuple[float, bytes, int]:
    """Send `parts` `gap` seconds apart until the server hangs up; seconds until it answered or hung up, all it said
    before closing (an answer can come in several segments), and how many parts went out before it hung up."""
    sock = socket.create_connection(("127.0.0.1", port))
    started, answer, sent = time.monotonic(), b"", 0
    try:
        for part in parts:
            sock.sendall(part)
            sent += 1
            if gap and select.select([sock], [], [], gap)[0]:
                break  # the server answered or hung up while we trickled
        sock.settimeout(30)
        while chunk := sock.recv(65536):
            answer += chunk
    except OSError:
        pass
    finally:
        sock.close()
    return time.monotonic() - started, answer, sent


@pytest.mark.process
def test_slow_headers_lose_the_connection_and_a_slow_body_gets_408():
    dead = f"127.0.0.1:{free_port()}"
    with GatewayProcess(dead, "reranker", "--api-header-timeout", "1", "--api-body-timeout", "1") as gateway:
        silent = _slow(gateway.port, [], 0)
        filler = [b"X-Filler: 1\r\n"] * 60  # 30 s of headers at one line per 0.5 s
        trickled = _slow(gateway.port, [b"POST /v2/rerank HTTP/1.1\r\n", *filler], 0.5)
        slow_body = _slow(gateway.port, [b"POST /v2/rerank HTTP/1.1\r\nHost: g\r\nContent-Length: 100\r\n\r\n{"], 0)
        live = httpx.get(f"{gateway.url}/live").status_code
    assert silent[1] == b"" and silent[0] >= 0.9  # held for the header timeout, then dropped without a word
    assert trickled[1] == b"" and trickled[2] < 61  # dropped while the head still trickled in
    assert slow_body[1].startswith(b"HTTP/1.1 408 ") and b"the body did not arrive within 1s" in slow_body[1]
    assert live == 200


@pytest.mark.process
def test_a_megabyte_of_headers_is_refused():
    # h11 refuses a head still incomplete past 16 KiB after a read: what one read brings (up to 256 KiB) passes.
    dead = f"127.0.0.1:{free_port()}"
    with GatewayProcess(dead, "reranker") as gateway:
        _, answer, _ = _slow(gateway.port, [b"GET /live HTTP/1.1\r\nHost: g\r\nX-Filler: " + b"a" * MIB + b"\r\n\r\n"], 0)
    assert answer.startswith(b"HTTP/1.1 400 ")


@pytest.mark.process
def test_past_the_connection_cap_requests_get_503():
    dead = f"127.0.0.1:{free_port()}"
    with GatewayProcess(dead, "reranker", "--api-max-connections", "4") as gateway:
        idle = [socket.create_connection(("127.0.0.1", gateway.port)) for _ in range(4)]
        try:
            # The cap counts connections the server has accepted: wait until it holds all four.
            assert wait_until(lambda: httpx.get(f"{gateway.url}/live").status_code == 503, GUARD)
            refused = httpx.get(f"{gateway.url}/live")
        finally:
            for sock in idle:
                sock.close()
        assert wait_until(lambda: httpx.get(f"{gateway.url}/live").status_code == 200, GUARD)
    assert (refused.status_code, refused.text) == (503, "Service Unavailable")


@pytest.mark.triton
def test_each_key_has_its_own_request_rate_and_the_next_request_hears_429_with_retry_after(served, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("key-one-0123456789\nkey-two-0123456789\n")
    body = {"model": "reranker", "query": QUERY, "documents": ["Harper Lee", "Paris"]}
    one, two = ({"Authorization": f"Bearer key-{n}-0123456789"} for n in ("one", "two"))
    with GatewayProcess(served.grpc_url, "reranker", "--api-key-file", str(keys), "--api-rate-requests", "0.5") as gateway:
        started = time.monotonic()
        first = httpx.post(f"{gateway.url}/v2/rerank", json=body, headers=one)
        limited = httpx.post(f"{gateway.url}/v2/rerank", json=body, headers=one)
        elapsed = time.monotonic() - started
        other = httpx.post(f"{gateway.url}/v2/rerank", json=body, headers=two)
        nim = httpx.post(f"{gateway.url}/v1/ranking", headers=one,
                         json={"query": {"text": QUERY}, "passages": [{"text": "Harper Lee"}]})
    assert (first.status_code, limited.status_code, other.status_code) == (200, 429, 200)
    # One request every 2 s: the wait is 2 s less what refilled since the first was let in.
    wait = int(limited.headers["retry-after"])
    assert math.ceil(2 - elapsed) <= wait <= 2
    assert limited.json() == {"message": f"rate limit reached for this caller; retry in {wait}s"}
    assert (nim.status_code, nim.json()["type"], nim.json()["code"]) == (429, "RateLimitError", 429)


@pytest.mark.triton
def test_prompt_tokens_count_against_the_request_limit_and_the_callers_token_rate(served):
    with GatewayProcess(served.grpc_url, "reranker", "--api-max-request-tokens", "1000", "--api-rate-tokens", "10") as gateway:
        too_big = httpx.post(f"{gateway.url}/rerank", json={"query": QUERY, "texts": ["word " * 200] * 2})
        started = time.monotonic()
        first = httpx.post(f"{gateway.url}/v1/rerank", json={"query": QUERY, "documents": ["Harper Lee wrote it."] * 3})
        limited = httpx.post(f"{gateway.url}/rerank", json={"query": QUERY, "texts": ["Harper Lee wrote it."]})
        elapsed = time.monotonic() - started
    assert (too_big.status_code, too_big.json()["error_type"]) == (413, "Validation")
    assert too_big.json()["error"].startswith("'texts' may cost up to 2324 prompt tokens")
    assert first.status_code == 200
    # The caller owes the real count (the bound, 546, was charged only while the request ran) less its
    # one-second allowance of 10: the wait is that debt at 10 tokens/s, less what refilled meanwhile.
    debt_seconds = (first.json()["usage"]["total_tokens"] - 10 + 1) / 10
    assert limited.status_code == 429
    assert math.ceil(debt_seconds - elapsed) <= int(limited.headers["retry-after"]) <= math.ceil(debt_seconds)


@pytest.mark.process
def test_a_5xx_names_no_endpoint_and_carries_the_request_id_the_log_explains(tmp_path):
    dead = f"127.0.0.1:{free_port()}"
    log = tmp_path / "gateway.log"
    with GatewayProcess(dead, "reranker", "--api-retry-for", "0.5", log=log) as gateway:
        response = httpx.post(f"{gateway.url}/v1/rerank", json={"query": "q", "documents": ["a"]})
    request_id = response.headers["x-request-id"]
    assert response.status_code == 503 and "server" not in response.headers
    assert response.json()["error"]["message"] == f"no Triton endpoint could take the request (request id {request_id})"
    (logged,) = [line for line in log.read_text().splitlines() if request_id in line]
    assert f"request {request_id} answered 503 (backend_unavailable): " in logged and dead in logged


@pytest.mark.process
def test_the_gateway_warns_when_it_serves_without_keys_beyond_loopback(tmp_path):
    dead = f"127.0.0.1:{free_port()}"
    keys = tmp_path / "keys"
    keys.write_text("key-0123456789abcdef\n")
    for extra, name in ((), "open"), (("--api-key-file", str(keys)), "keyed"):
        with GatewayProcess(dead, "reranker", "--host", "0.0.0.0", *extra, log=tmp_path / f"{name}.log"):
            pass
    warning = "has no API keys: anyone who reaches the port can use it and read its metrics; set --api-key-file"
    assert warning in (tmp_path / "open.log").read_text()
    assert warning not in (tmp_path / "keyed.log").read_text()


@pytest.mark.process
def test_metrics_on_their_own_port_need_no_key_and_leave_the_api_port(tmp_path):
    dead = f"127.0.0.1:{free_port()}"
    keys = tmp_path / "keys"
    keys.write_text("key-0123456789abcdef\n")
    metrics_port = free_port()
    with GatewayProcess(dead, "reranker", "--api-key-file", str(keys), "--api-metrics-port", str(metrics_port)) as gateway:
        own_port = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
        api_port = httpx.get(f"{gateway.url}/metrics", headers={"Authorization": "Bearer key-0123456789abcdef"})
    assert (own_port.status_code, "mxbai_gateway_requests_in_flight" in own_port.text) == (200, True)
    assert api_port.status_code == 404


WORDS = "the search model document query score river history science novel author music".split()


@pytest.mark.triton
@pytest.mark.slow
def test_a_20_mb_document_is_scored_as_its_head_cut_at_the_token_limit(served, oracle):
    rng = np.random.default_rng(0)
    big = " ".join(rng.choice(WORDS, size=3_000_000))[: 20_000_000]
    head = big[: big.index(" ", 60_000)]  # ~9k tokens: just past the 8192 a document may keep
    body = {"query": QUERY, "return_documents": False}
    with GatewayProcess(served.grpc_url, "reranker") as gateway, httpx.Client(base_url=gateway.url, timeout=120) as http:
        http.post("/v1/rerank", json={**body, "documents": [head]}).raise_for_status()  # warm
        started = time.perf_counter()
        short = http.post("/v1/rerank", json={**body, "documents": [head]}).json()
        short_seconds = time.perf_counter() - started
        started = time.perf_counter()
        long = http.post("/v1/rerank", json={**body, "documents": [big]}).json()
        long_seconds = time.perf_counter() - started
    assert long["usage"] == short["usage"] == {"total_tokens": 8271, "prompt_tokens": 8271}  # both cut at the cap
    assert long["results"][0]["relevance_score"] == short["results"][0]["relevance_score"]
    expected = oracle.normalize_scores(reference_scores(oracle, QUERY, [head]))
    np.testing.assert_allclose(short["results"][0]["relevance_score"], expected[0], atol=1e-4, rtol=0)
    # Tokenizing 20 MB whole took ~14 s on a 2-core machine; cutting the head first costs what 8k tokens cost. The
    # cut itself is pinned by the tokenization tests; the times are printed, not asserted (no wall clock in tests).
    print(f"20 MB document {long_seconds:.2f}s, {len(head) / 1e3:.0f} kB document {short_seconds:.2f}s")
