"""The gateway app in-process, with a scripted Triton edge (the client it scores through): each API's shapes for
answers and errors — bad bodies, 404, 413, 502, 503, 504 — without a subprocess or a tritonserver."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the gateway is a FastAPI app")

from fastapi.testclient import TestClient  # noqa: E402

from mxbai_triton.client.transport import RerankError, Scored, ServerLimits  # noqa: E402
from mxbai_triton.core.errors import ErrorKind  # noqa: E402
from mxbai_triton.core.telemetry import TIMING_HEADERS, Timings  # noqa: E402
from mxbai_triton.gateway.app import create_app  # noqa: E402
from mxbai_triton.gateway.backend import BackendSettings  # noqa: E402

QUERY = "Who wrote 'To Kill a Mockingbird'?"
MAX_DOCUMENTS = 24


class Edge:
    """What Triton answers, scripted per test: `scores(documents)` gives the raw scores (or raises)."""

    def __init__(self):
        self.scores = lambda documents: np.arange(len(documents), dtype=np.float32)[::-1].copy()
        self.calls = 0
        self.deadlines = []
        self.request_ids = []
        self.timings = Timings()


@pytest.fixture()
def edge(monkeypatch):
    script = Edge()

    class ScriptedClient:
        def __init__(self, urls, *, model, **_):
            self.model = model

        async def limits(self, deadline=None):
            return ServerLimits(MAX_DOCUMENTS, 9.0, 8271, f"{self.model}_tokenizer")

        async def scored(self, query, documents, *, instruction=None, priority=0, truncate="END", deadline=None,
                         request_id="", trace_headers=None):
            script.calls += 1
            script.deadlines.append(deadline)
            script.request_ids.append(request_id)
            try:
                result = script.scores(documents)
                if asyncio.iscoroutine(result):
                    result = await result
            except asyncio.TimeoutError:  # what the transport raises when the request's deadline passes
                raise RerankError("no answer", kind=ErrorKind.DEADLINE_EXCEEDED) from None
            return Scored(result, np.full(len(result), 7, dtype=np.int64), script.timings, request_id)

        async def close(self):
            pass

    monkeypatch.setattr("mxbai_triton.gateway.backend.AsyncRerankClient", ScriptedClient)
    return script


def _client(**settings) -> TestClient:
    options = {"urls": ("127.0.0.1:1",), "models": ("reranker",), "timeout": 5.0, "retry_for": 1.0, **settings}
    return TestClient(create_app(BackendSettings(**options)))


TOO_MANY = ["doc"] * (MAX_DOCUMENTS + 1)
BAD_REQUESTS = [
    # (path, body, status, the error as that API shapes it)
    ("/v2/rerank", {"model": "reranker", "query": QUERY}, 400, {"message": "'documents': Field required"}),
    # Cohere's API requires both, as the SDKs send them; the other bodies may name no model.
    ("/v2/rerank", {"query": QUERY, "documents": ["a"]}, 400, {"message": "'model': Field required"}),
    ("/v2/rerank", {"model": "reranker", "query": QUERY, "documents": []}, 400,
     {"message": "'documents': List should have at least 1 item after validation, not 0"}),
    ("/v2/rerank", {"model": "reranker", "query": 3, "documents": ["a"]}, 400,
     {"message": "'query': Input should be a valid string"}),
    ("/v2/rerank", {"model": "reranker", "query": QUERY, "documents": TOO_MANY}, 413,
     {"message": f"'documents' has {len(TOO_MANY)} items, more than the limit of {MAX_DOCUMENTS} per request; "
                 "split the list"}),
    ("/v1/rerank", {"query": QUERY, "documents": ["a", 7]}, 400,
     {"error": {"message": "'documents[1]': Input should be a string or an object with a string 'text'",
                "type": "BadRequestError", "param": "documents[1]", "code": 400}}),
    ("/v1/rerank", {"query": QUERY, "documents": ["a"], "top_n": -1}, 400,
     {"error": {"message": "'top_n': Input should be greater than or equal to 0", "type": "BadRequestError",
                "param": "top_n", "code": 400}}),
    ("/v1/rerank", {"model": "other", "query": QUERY, "documents": ["a"]}, 404,
     {"error": {"message": "model 'other' is not served here; served: reranker", "type": "NotFoundError",
                "param": "model", "code": 404}}),
    ("/v1/rerank", {"query": QUERY, "documents": ["a"], "priority": -1}, 400,
     {"error": {"message": "'priority': Input should be greater than or equal to 0", "type": "BadRequestError",
                "param": "priority", "code": 400}}),
    ("/rerank", {"query": QUERY}, 422,
     {"error": "the body has neither 'texts' nor 'documents': TEI's shape needs 'query' and 'texts' (list of strings); the "
               "Jina/vLLM shape needs 'query' and 'documents' (strings or {'text': ...} objects)", "error_type": "Validation"}),
    ("/rerank", {"query": QUERY, "texts": ["a"], "documents": ["a"]}, 422,
     {"error": "the body has both 'texts' and 'documents': TEI's shape needs 'query' and 'texts' (list of strings); the "
               "Jina/vLLM shape needs 'query' and 'documents' (strings or {'text': ...} objects)", "error_type": "Validation"}),
    ("/rerank", {"query": QUERY, "texts": "a"}, 422, {"error": "'texts': Input should be a valid list", "error_type": "Validation"}),
    ("/rerank", {"query": QUERY, "documents": ["a", 7]}, 400,
     {"error": {"message": "'documents[1]': Input should be a string or an object with a string 'text'",
                "type": "BadRequestError", "param": "documents[1]", "code": 400}}),
    ("/rerank", {"model": "other", "query": QUERY, "documents": ["a"]}, 404,
     {"error": {"message": "model 'other' is not served here; served: reranker", "type": "NotFoundError",
                "param": "model", "code": 404}}),
    ("/rerank", {"query": QUERY, "texts": TOO_MANY}, 413,
     {"error": f"'texts' has {len(TOO_MANY)} items, more than the limit of {MAX_DOCUMENTS} per request; "
               "split the list", "error_type": "Validation"}),
    ("/rerank", [QUERY], 422, {"error": "the body must be a JSON object, got list", "error_type": "Validation"}),
]


@pytest.mark.parametrize("path, body, status, error", BAD_REQUESTS)
def test_bad_input_gets_the_api_own_error_shape_and_status(edge, path, body, status, error):
    with _client() as client:
        response = client.post(path, json=body)
    assert (response.status_code, response.json()) == (status, error)
    assert edge.calls == 0  # refused before Triton is asked


@pytest.mark.parametrize("raw", [b"{not json", b"[" * 100_000 + b"]" * 100_000, b'{"query": ' + b"9" * 5000 + b"}"],
                         ids=["not_json", "deep_nesting", "5000_digit_integer"])
def test_a_body_that_is_not_usable_json_is_a_bad_request_and_the_gateway_stays_up(edge, raw):
    with _client() as client:
        response = client.post("/v2/rerank", content=raw)
        assert client.get("/live").status_code == 200
    assert response.status_code == 400 and response.json()["message"].startswith("the body is not valid JSON")


def test_scores_come_back_sorted_in_each_apis_shape(edge):
    edge.scores = lambda documents: np.array([0.5, 3.0, -1.0], dtype=np.float32)
    with _client() as client:
        cohere = client.post("/v2/rerank", json={"model": "reranker", "query": QUERY, "documents": ["a", "b", "c"]}).json()
        tei = client.post("/rerank", json={"query": QUERY, "texts": ["a", "b", "c"], "raw_scores": True}).json()
        nim = client.post("/v1/ranking", json={"query": {"text": QUERY}, "passages": [{"text": t} for t in "abc"]}).json()
    assert [r["index"] for r in cohere["results"]] == [1, 0, 2] and cohere["meta"]["tokens"]["input_tokens"] == 21
    assert tei == [{"index": 1, "score": 3.0}, {"index": 0, "score": 0.5}, {"index": 2, "score": -1.0}]
    assert nim["rankings"] == [{"index": 1, "logit": 3.0}, {"index": 0, "logit": 0.5}, {"index": 2, "logit": -1.0}]


@pytest.mark.parametrize("wrong, detail", [(lambda d: np.zeros(len(d) - 1, np.float32), "2 scores for 3 documents"),
                                           (lambda d: np.array([0.0, np.nan, 1.0], np.float32), "non-finite")],
                         ids=["short_answer", "nan_score"])
def test_a_wrong_answer_from_triton_is_a_502_never_a_ranking(edge, caplog, wrong, detail):
    edge.scores = wrong
    with _client() as client:
        response = client.post("/v1/rerank", json={"query": QUERY, "documents": ["a", "b", "c"]})
    assert response.status_code == 502 and "results" not in response.json()
    assert response.json()["error"]["type"] == "InternalServerError"
    assert detail in caplog.text  # the details go to the log, the body stays generic


def test_no_triton_endpoint_is_a_503_in_each_apis_shape(edge):
    def unavailable(documents):
        raise RerankError("failed after 3 tries over 127.0.0.1:1", unavailable=True)

    edge.scores = unavailable
    with _client() as client:
        cohere = client.post("/v2/rerank", json={"model": "reranker", "query": "q", "documents": ["a"]})
        tei = client.post("/rerank", json={"query": "q", "texts": ["a"]})
        nim = client.post("/v1/ranking", json={"query": {"text": "q"}, "passages": [{"text": "a"}]})
    assert cohere.status_code == tei.status_code == nim.status_code == 503
    assert cohere.json()["message"].startswith("no Triton endpoint could take the request")
    assert tei.json()["error_type"] == "Unhealthy"
    assert nim.json()["object"] == "error" and nim.json()["code"] == 503
    assert "127.0.0.1:1" not in cohere.text  # no endpoint address in an answer


def test_a_request_past_its_deadline_is_a_504_and_the_deadline_is_the_one_made_at_the_edge(edge):
    def slow(documents):
        raise asyncio.TimeoutError()  # the request's deadline passed on the way

    edge.scores = slow
    with _client(timeout=0.3, retry_for=0.1) as client:
        response = client.post("/v1/rerank", json={"query": QUERY, "documents": ["a"]})
    assert response.status_code == 504
    assert response.json()["error"]["message"] == f"no answer from Triton within 0.3s (request id {response.headers['x-request-id']})"
    (deadline,) = edge.deadlines
    assert deadline.bounded and deadline.remaining() <= 0.3  # one deadline, created when the request came in


def test_the_request_id_is_tritons_request_id_and_the_answers_id_and_the_timings_come_back_as_headers(edge):
    edge.timings = Timings(tokenization=0.0042, queue=0.0105, inference=0.2501, dispatch=0.2606)
    given = "caller-id-0001"
    with _client() as client:
        cohere = client.post("/v2/rerank", json={"model": "reranker", "query": QUERY, "documents": ["a", "b"]},
                             headers={"x-request-id": given})
        jina = client.post("/v1/rerank", json={"query": QUERY, "documents": ["a", "b", "c"]})
    generated = jina.headers["x-request-id"]
    assert (cohere.headers["x-request-id"], cohere.json()["id"], jina.json()["id"]) == (given, given, generated)
    assert edge.request_ids == [given, generated]
    headers = {name: cohere.headers[name] for name in TIMING_HEADERS}
    assert {k: v for k, v in headers.items() if k != "x-total-time"} == {
        "x-tokenization-time": "4", "x-queue-time": "10", "x-inference-time": "250", "x-compute-tokens": "14"}
    assert headers["x-total-time"].isdigit()  # the edge's own clock (a scripted edge takes no time)
    assert cohere.headers["server-timing"].split(", ")[1:] == ["tokenization;dur=4.200", "queue;dur=10.500",
                                                               "inference;dur=250.100"]


def test_the_access_log_has_one_json_line_per_request_with_its_id_api_model_size_status_and_timings(edge, caplog):
    import json
    import logging

    from mxbai_triton.console import JsonFormatter

    edge.timings = Timings(tokenization=0.0042, queue=0.0105, inference=0.2501, dispatch=0.2606)
    options = {"urls": ("127.0.0.1:1",), "models": ("reranker",), "timeout": 5.0, "retry_for": 1.0}
    with caplog.at_level(logging.INFO, logger="mxbai_triton.gateway.access"), \
            TestClient(create_app(BackendSettings(**options), access_log=True)) as client:
        client.post("/rerank", json={"query": QUERY, "texts": ["a", "b", "c"]}, headers={"x-request-id": "access-0001"})
        client.post("/v2/rerank", json={"model": "nope", "query": QUERY, "documents": ["a"]})
    ok, missing = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "mxbai_triton.gateway.access"]
    assert {k: ok[k] for k in ("id", "api", "model", "class", "status", "documents", "tokens", "tokenization_ms",
                               "queue_ms", "inference_ms")} == {
        "id": "access-0001", "api": "tei", "model": "reranker", "class": "interactive", "status": 200, "documents": 3,
        "tokens": 21, "tokenization_ms": 4.2, "queue_ms": 10.5, "inference_ms": 250.1}
    assert ok["total_ms"] >= 0 and ok["level"] == "info" and ok["message"].startswith("request access-0001 api=tei")
    assert (missing["api"], missing["status"], missing["kind"], missing["documents"]) == ("cohere", 404, "not_found", 0)


def test_an_error_about_the_request_from_triton_is_a_400_with_its_message(edge):
    def refused(documents):
        raise RerankError("reranker: 'documents[0]' is not valid UTF-8", kind=ErrorKind.INVALID_INPUT)

    edge.scores = refused
    with _client() as client:
        response = client.post("/v2/rerank", json={"model": "reranker", "query": "q", "documents": ["a"]})
    assert (response.status_code, response.json()["message"]) == (400, "reranker: 'documents[0]' is not valid UTF-8")
