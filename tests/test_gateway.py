"""The rerank HTTP APIs on a real tritonserver: the official Cohere SDK, and httpx for the Jina/vLLM and TEI shapes (both at /rerank)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from mxbai_triton.gateway.process import GatewayProcess
from tests.reference import reference_scores

pytestmark = pytest.mark.triton
cohere = pytest.importorskip("cohere", reason="the official Cohere SDK is the client under test")

QUERY = "Who wrote 'To Kill a Mockingbird'?"
DOCUMENTS = ["Harper Lee wrote it in 1960.", "Boil water, add salt.", "", "Goethe schrieb Faust.",
             "To Kill a Mockingbird is a novel by Harper Lee. " * 20, "Paris is the capital."]


@pytest.fixture(scope="module")
def gateway(served):
    with GatewayProcess(served.grpc_url, "reranker", "--api-retry-for", "2") as process:
        yield process


def _expected(oracle, query=QUERY, documents=DOCUMENTS, instruction=None):
    raw = reference_scores(oracle, query, documents, instruction)
    relevance = oracle.normalize_scores(raw)
    order = sorted(range(len(raw)), key=lambda i: (-raw[i], i))
    return raw, np.asarray(relevance, dtype=np.float64), order


def _prompt_tokens(oracle, query=QUERY, documents=DOCUMENTS, instruction=None) -> int:
    inputs = oracle.prepare_inputs([query] * len(documents), documents, instruction=instruction)
    return int(inputs["attention_mask"].sum())


def test_cohere_sdk_rerank_returns_reference_relevance_sorted_with_top_n(gateway, oracle):
    raw, relevance, order = _expected(oracle)
    client = cohere.ClientV2(api_key="unused", base_url=gateway.url)
    response = client.rerank(model="reranker", query=QUERY, documents=DOCUMENTS, top_n=4)
    assert [r.index for r in response.results] == order[:4]
    np.testing.assert_allclose([r.relevance_score for r in response.results], relevance[order[:4]], atol=1e-4, rtol=0)
    assert response.meta.tokens.input_tokens == _prompt_tokens(oracle)


def test_cohere_sdk_sees_bad_input_as_bad_request_naming_the_field(gateway):
    client = cohere.ClientV2(api_key="unused", base_url=gateway.url)
    with pytest.raises(cohere.errors.BadRequestError) as raised:
        client.rerank(model="reranker", query=QUERY, documents=DOCUMENTS, top_n=0)
    assert raised.value.body == {"message": "'top_n': Input should be greater than or equal to 1"}


def test_cohere_sdk_sees_an_unknown_model_as_not_found(gateway):
    client = cohere.ClientV2(api_key="unused", base_url=gateway.url)
    with pytest.raises(cohere.errors.NotFoundError, match="model 'rerank-v3.5' is not served here; served: reranker"):
        client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCUMENTS)


def test_jina_shape_takes_strings_and_text_objects_and_returns_documents_and_usage(gateway, oracle):
    raw, relevance, order = _expected(oracle)
    documents = [d if i % 2 else {"text": d} for i, d in enumerate(DOCUMENTS)]
    body = httpx.post(f"{gateway.url}/v1/rerank", json={"model": "reranker", "query": QUERY, "documents": documents,
                                                         "top_n": 3}).json()
    assert body["model"] == "reranker"
    assert [r["index"] for r in body["results"]] == order[:3]
    assert [r["document"]["text"] for r in body["results"]] == [DOCUMENTS[i] for i in order[:3]]
    np.testing.assert_allclose([r["relevance_score"] for r in body["results"]], relevance[order[:3]], atol=1e-4, rtol=0)
    assert body["usage"]["total_tokens"] == _prompt_tokens(oracle)


def test_jina_shape_without_model_or_documents_in_the_answer(gateway):
    body = httpx.post(f"{gateway.url}/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS,
                                                         "return_documents": False}).json()
    assert sorted(r["index"] for r in body["results"]) == list(range(len(DOCUMENTS)))
    assert all("document" not in r for r in body["results"])


def test_tei_shape_returns_raw_or_normalised_scores_sorted(gateway, oracle):
    raw, relevance, order = _expected(oracle)
    for raw_scores, expected in ((True, raw), (False, relevance)):
        body = httpx.post(f"{gateway.url}/rerank", json={"query": QUERY, "texts": DOCUMENTS, "raw_scores": raw_scores,
                                                          "return_text": True}).json()
        assert [r["index"] for r in body] == order
        assert [r["text"] for r in body] == [DOCUMENTS[i] for i in order]
        np.testing.assert_allclose([r["score"] for r in body], np.asarray(expected)[order], atol=1e-4, rtol=0)


def test_rerank_path_takes_the_vllm_body_and_answers_in_its_shape(gateway, oracle):
    # What LiteLLM's hosted_vllm, infinity and together_ai providers post to /rerank.
    raw, relevance, order = _expected(oracle)
    body = httpx.post(f"{gateway.url}/rerank", json={"model": "reranker", "query": QUERY, "documents": DOCUMENTS,
                                                      "top_n": 3, "return_documents": True}).json()
    assert (body["model"], body["usage"]["total_tokens"]) == ("reranker", _prompt_tokens(oracle))
    assert [r["index"] for r in body["results"]] == order[:3]
    assert [r["document"]["text"] for r in body["results"]] == [DOCUMENTS[i] for i in order[:3]]
    np.testing.assert_allclose([r["relevance_score"] for r in body["results"]], relevance[order[:3]], atol=1e-4, rtol=0)


def test_both_rerank_shapes_score_like_the_reference(gateway, oracle):
    raw, relevance, order = _expected(oracle)
    tei = httpx.post(f"{gateway.url}/rerank", json={"query": QUERY, "texts": DOCUMENTS, "raw_scores": True}).json()
    vllm = httpx.post(f"{gateway.url}/rerank", json={"query": QUERY, "documents": DOCUMENTS}).json()["results"]
    assert [r["index"] for r in tei] == [r["index"] for r in vllm] == order
    np.testing.assert_allclose([r["score"] for r in tei], raw[order], atol=1e-4, rtol=0)
    np.testing.assert_allclose([r["relevance_score"] for r in vllm], relevance[order], atol=1e-4, rtol=0)


def test_instruction_extension_scores_like_the_reference_instruction(gateway, oracle):
    instruction = "Find the author of the book"
    _, relevance, order = _expected(oracle, instruction=instruction)
    body = httpx.post(f"{gateway.url}/v2/rerank", json={"model": "reranker", "query": QUERY, "documents": DOCUMENTS,
                                                         "instruction": instruction}).json()
    assert [r["index"] for r in body["results"]] == order
    np.testing.assert_allclose([r["relevance_score"] for r in body["results"]], relevance[order], atol=1e-4, rtol=0)


def test_an_empty_document_list_is_an_empty_ranking_where_the_api_allows_it(gateway):
    body = httpx.post(f"{gateway.url}/v1/rerank", json={"query": QUERY, "documents": []}).json()
    assert body["results"] == []





def test_models_health_and_metrics_describe_the_gateway(gateway):
    assert httpx.get(f"{gateway.url}/v1/models").json()["data"][0]["id"] == "reranker"
    health = httpx.get(f"{gateway.url}/health")
    assert (health.status_code, health.json()["status"]) == (200, "ok")
    httpx.post(f"{gateway.url}/rerank", json={"query": QUERY, "texts": DOCUMENTS[:3]}).raise_for_status()
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'mxbai_gateway_requests_total{api="tei",code="200"}' in metrics
    assert 'mxbai_gateway_documents_per_request_bucket{api="tei",le="5.0"}' in metrics
    assert "mxbai_gateway_request_duration_seconds_bucket" in metrics




def test_health_is_503_while_triton_answers_but_the_ensemble_is_not_there(served):
    with GatewayProcess(served.grpc_url, "not_loaded") as process:
        health = httpx.get(f"{process.url}/health")
    assert (health.status_code, health.json()["status"]) == (503, "unavailable")


def test_cohere_route_takes_text_objects_and_returns_documents_when_asked(gateway):
    documents = [{"text": d} for d in DOCUMENTS[:3]]
    body = httpx.post(f"{gateway.url}/v2/rerank", json={"model": "reranker", "query": QUERY, "documents": documents,
                                                         "return_documents": True}).json()
    assert sorted((r["index"], r["document"]["text"]) for r in body["results"]) == list(enumerate(DOCUMENTS[:3]))


def test_vllm_top_n_zero_means_all(gateway):
    body = httpx.post(f"{gateway.url}/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS, "top_n": 0}).json()
    assert len(body["results"]) == len(DOCUMENTS)



def test_api_keys_guard_the_rerank_routes_not_the_probes(served, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# one key per line\nsecret-key-1\n")
    with GatewayProcess(served.grpc_url, "reranker", "--api-key-file", str(keys)) as process:
        refused = httpx.post(f"{process.url}/v2/rerank", json={"model": "reranker", "query": "q", "documents": ["a"]})
        wrong = cohere.ClientV2(api_key="wrong", base_url=process.url)
        with pytest.raises(cohere.errors.UnauthorizedError):
            wrong.rerank(model="reranker", query="q", documents=["a"])
        right = cohere.ClientV2(api_key="secret-key-1", base_url=process.url)
        assert len(right.rerank(model="reranker", query="q", documents=["a", "b"]).results) == 2
        assert httpx.get(f"{process.url}/v1/models").status_code == 401
        non_ascii = httpx.post(f"{process.url}/rerank", json={"query": "q", "texts": ["a"]},
                               headers={"Authorization": "Bearer cl\u00e9".encode()})
        assert httpx.get(f"{process.url}/health").status_code == 200
    assert refused.status_code == 401
    assert refused.json() == {"message": "missing or invalid API key: send 'Authorization: Bearer <key>'"}
    assert (non_ascii.status_code, non_ascii.json()["error_type"]) == (401, "Unauthorized")


def test_serve_with_api_port_runs_triton_and_the_gateway_for_the_repository_ensembles(tiny_repository):
    import subprocess
    import time

    from mxbai_triton.processes import free_port
    from tests.conftest import serve_command

    api_port = free_port()
    command, _ = serve_command(tiny_repository, "--api-port", str(api_port))
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, health = time.monotonic() + 120, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{api_port}/health")
                if health.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        assert health is not None and health.status_code == 200
        models = httpx.get(f"http://127.0.0.1:{api_port}/v1/models").json()
        ranked = httpx.post(f"http://127.0.0.1:{api_port}/rerank", json={"query": "q", "texts": ["a", "b"]}).json()
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert [m["id"] for m in models["data"]] == ["rr"]
    assert sorted(r["index"] for r in ranked) == [0, 1]
    assert process.returncode == 0
