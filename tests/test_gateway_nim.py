"""NVIDIA's NIM reranking API (`POST /v1/ranking`, and the hosted path LiteLLM posts to) on a real tritonserver: NVIDIA's own
LangChain reranker, LiteLLM's nvidia_nim provider, httpx, truncate refused before scoring (NIM and TEI)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from mxbai_triton.gateway.process import GatewayProcess
from tests.cases import LONG_DOCUMENT
from tests.conftest import SERVED_MAX_DOCUMENTS
from tests.reference import reference_scores
from tests.wire import model_statistics

pytestmark = pytest.mark.triton
nvidia = pytest.importorskip("langchain_nvidia_ai_endpoints", reason="NVIDIA's NIM reranker client is the client under test")

QUERY = "Who wrote 'To Kill a Mockingbird'?"
PASSAGES = ["Harper Lee wrote it in 1960.", "Boil water, add salt.", "", "Goethe schrieb Faust.",
            "To Kill a Mockingbird is a novel by Harper Lee. " * 20, "Paris is the capital."]
# The ensemble's published max_prompt_tokens for the reference's max_length (8192) and template (79 tokens).
MAX_PROMPT_TOKENS = 8271


@pytest.fixture(scope="module")
def gateway(served):
    # No --model: the gateway finds the served ensemble in Triton's repository index.
    with GatewayProcess(served.grpc_url, None, "--api-retry-for", "2") as process:
        yield process


def _scorer_executions(served) -> int:
    stats = model_statistics(served, "reranker_scorer").inference_stats
    return stats.success.count + stats.fail.count


def _body(passages, **extra) -> dict:
    return {"model": "reranker", "query": {"text": QUERY}, "passages": [{"text": p} for p in passages], **extra}


def _reference(oracle, passages=PASSAGES):
    raw = reference_scores(oracle, QUERY, passages)
    return raw, sorted(range(len(raw)), key=lambda i: (-raw[i], i))


def test_nvidia_langchain_reranker_ranks_like_the_reference_with_raw_logits(gateway, oracle):
    from langchain_core.documents import Document

    raw, order = _reference(oracle)
    reranker = nvidia.NVIDIARerank(base_url=f"{gateway.url}/v1", model="reranker", top_n=len(PASSAGES))
    ranked = reranker.compress_documents(documents=[Document(page_content=p) for p in PASSAGES], query=QUERY)
    assert [PASSAGES.index(d.page_content) for d in ranked] == order
    np.testing.assert_allclose([d.metadata["relevance_score"] for d in ranked], raw[order], atol=1e-4, rtol=0)


def test_nvidia_langchain_reranker_without_a_model_takes_the_served_one(gateway):
    with pytest.warns(UserWarning, match="Default model is set as: reranker"):
        reranker = nvidia.NVIDIARerank(base_url=f"{gateway.url}/v1")
    assert reranker.model == "reranker"


def test_nvidia_langchain_reranker_hears_a_too_long_passage_as_nims_400(gateway):
    from langchain_core.documents import Document

    reranker = nvidia.NVIDIARerank(base_url=f"{gateway.url}/v1", model="reranker", truncate="NONE")
    # What NVIDIA's own test of a NIM expects: the status and "exceeds maximum allowed" in the error.
    with pytest.raises(Exception, match=r"^\[400\] Input length of passages\[0\] .* exceeds maximum allowed token size 8270"):
        reranker.compress_documents(documents=[Document(page_content=LONG_DOCUMENT)], query=QUERY)


def test_ranking_over_httpx_is_best_first_with_reference_logits_and_token_usage(gateway, oracle):
    raw, order = _reference(oracle)
    body = httpx.post(f"{gateway.url}/v1/ranking", json=_body(PASSAGES)).json()
    assert [r["index"] for r in body["rankings"]] == order
    np.testing.assert_allclose([r["logit"] for r in body["rankings"]], raw[order], atol=1e-4, rtol=0)
    prompt_tokens = int(oracle.prepare_inputs([QUERY] * len(PASSAGES), PASSAGES)["attention_mask"].sum())
    assert body["usage"] == {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}


def test_truncate_end_scores_a_passage_over_the_limit_as_the_reference_cuts_it(gateway, oracle):
    passages = [LONG_DOCUMENT, "short"]
    raw, order = _reference(oracle, passages)
    body = httpx.post(f"{gateway.url}/v1/ranking", json=_body(passages, truncate="END"), timeout=120).json()
    assert [r["index"] for r in body["rankings"]] == order
    np.testing.assert_allclose([r["logit"] for r in body["rankings"]], raw[order], atol=1e-4, rtol=0)


def test_a_cut_passage_has_exactly_the_published_max_prompt_tokens(gateway, served):
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(served.grpc_url)
    published = client.get_model_config("reranker").config.parameters["max_prompt_tokens"].string_value
    client.close()
    body = httpx.post(f"{gateway.url}/v1/ranking", json=_body([LONG_DOCUMENT], truncate="END"), timeout=120).json()
    assert (int(published), body["usage"]["prompt_tokens"]) == (MAX_PROMPT_TOKENS, MAX_PROMPT_TOKENS)


TOO_LONG = {"object": "error", "message": "Input length of passages[1] (prompt template + query + document) exceeds maximum "
            "allowed token size 8270; allow truncation to score it cut as the reference cuts it",
            "type": "BadRequestError", "param": "passages", "code": 400}


@pytest.mark.parametrize("extra", [{"truncate": "NONE"}, {}], ids=["NONE", "default_is_NONE"])
def test_truncate_none_refuses_a_passage_over_the_limit_naming_it_before_any_scoring(gateway, served, extra):
    before = _scorer_executions(served)
    response = httpx.post(f"{gateway.url}/v1/ranking", json=_body(["short", LONG_DOCUMENT], **extra), timeout=120)
    assert (response.status_code, response.json()) == (400, TOO_LONG)
    assert _scorer_executions(served) == before  # refused after tokenizing, before the scorer saw a row


def test_tei_truncate_false_refuses_a_too_long_text_as_tei_does_and_true_scores_it_cut(gateway, oracle):
    texts = ["short", LONG_DOCUMENT]
    refused = httpx.post(f"{gateway.url}/rerank", json={"query": QUERY, "texts": texts, "truncate": False}, timeout=120)
    assert (refused.status_code, refused.json()["error_type"]) == (413, "Validation")
    assert refused.json()["error"].startswith("Input length of texts[1] (prompt template + query + document) exceeds")
    cut = httpx.post(f"{gateway.url}/rerank", json={"query": QUERY, "texts": texts, "truncate": True, "raw_scores": True},
                     timeout=120).json()
    raw, _ = _reference(oracle, texts)
    np.testing.assert_allclose([r["score"] for r in sorted(cut, key=lambda r: r["index"])], raw, atol=1e-4, rtol=0)


def test_nvidias_hosted_path_takes_the_model_from_the_path_and_cuts_to_top_k(gateway, oracle):
    raw, order = _reference(oracle)
    body = httpx.post(f"{gateway.url}/v1/retrieval/reranker/reranking", json={**_body(PASSAGES), "top_k": 2}).json()
    assert [r["index"] for r in body["rankings"]] == order[:2]
    unknown = httpx.post(f"{gateway.url}/v1/retrieval/nvidia/llama-3.2-nv-rerankqa-1b-v2/reranking", json=_body(PASSAGES))
    assert (unknown.status_code, unknown.json()["message"]) == (
        404, "model 'nvidia/llama-3.2-nv-rerankqa-1b-v2' is not served here; served: reranker")


def test_litellms_default_nvidia_nim_call_ranks_like_the_reference(gateway, oracle):
    litellm = pytest.importorskip("litellm", reason="LiteLLM's nvidia_nim provider is the client under test")
    raw, order = _reference(oracle)
    # As LiteLLM's documentation shows it: `nvidia_nim/<model>`, posted to {api_base}/v1/retrieval/<model>/reranking.
    response = litellm.rerank(model="nvidia_nim/reranker", query=QUERY, documents=PASSAGES, top_n=3,
                              api_base=gateway.url, api_key="not-needed-without-api-keys")
    assert [r["index"] for r in response.results] == order[:3]
    np.testing.assert_allclose([r["relevance_score"] for r in response.results], raw[order[:3]], atol=1e-4, rtol=0)


def test_truncate_none_scores_passages_that_fit(gateway, oracle):
    raw, order = _reference(oracle)
    body = httpx.post(f"{gateway.url}/v1/ranking", json=_body(PASSAGES, truncate="NONE")).json()
    np.testing.assert_allclose([r["logit"] for r in body["rankings"]], raw[order], atol=1e-4, rtol=0)


def _error(status: int, message: str, param: str | None, kind: str = "BadRequestError") -> dict:
    return {"object": "error", "message": message, "type": kind, "param": param, "code": status}


BAD_BODIES = [
    ({"query": {"text": QUERY}}, 422, _error(422, "'passages': Field required", "passages")),
    ({"passages": [{"text": "a"}]}, 422, _error(422, "'query': Field required", "query")),
    ({"query": QUERY, "passages": [{"text": "a"}]}, 422,
     _error(422, "'query': Input should be an object with a string 'text'", "query")),
    ({"query": {"text": QUERY}, "passages": ["a"]}, 422,
     _error(422, "'passages[0]': Input should be an object with a string 'text'", "passages[0]")),
    ({"query": {"text": QUERY}, "passages": [{"text": 5}]}, 422,
     _error(422, "'passages[0].text': Input should be a valid string", "passages[0].text")),
    ({"query": {"text": QUERY}, "passages": [{"text": "a"}], "truncate": "START"}, 422,
     _error(422, "'truncate': Input should be 'NONE' or 'END'", "truncate")),
    ({"model": "nvidia/llama-3.2-nv-rerankqa-1b-v2", "query": {"text": QUERY}, "passages": [{"text": "a"}]}, 404,
     _error(404, "model 'nvidia/llama-3.2-nv-rerankqa-1b-v2' is not served here; served: reranker", "model", "NotFoundError")),
    ({"query": {"text": QUERY}, "passages": [{"text": "a"}] * (SERVED_MAX_DOCUMENTS + 1)}, 400,
     _error(400, f"'passages' has {SERVED_MAX_DOCUMENTS + 1} items, more than the limit of {SERVED_MAX_DOCUMENTS} per "
                 "request; split the list", "passages")),
    ([{"text": QUERY}], 422, _error(422, "the body must be a JSON object, got list", None)),
]


@pytest.mark.parametrize("body, status, error", BAD_BODIES,
                         ids=["no_passages", "no_query", "query_string", "passage_string", "passage_text_number",
                              "unknown_truncate", "unknown_model", "too_many_passages", "not_an_object"])
def test_bad_bodies_get_nims_error_shape_and_status(gateway, body, status, error):
    response = httpx.post(f"{gateway.url}/v1/ranking", json=body)
    assert (response.status_code, response.json()) == (status, error)


def test_no_passages_is_an_empty_ranking(gateway):
    assert httpx.post(f"{gateway.url}/v1/ranking", json=_body([])).json() == {"rankings": [], "usage": {
        "prompt_tokens": 0, "total_tokens": 0}}


def test_ranking_is_counted_in_the_metrics_under_its_own_api(gateway):
    httpx.post(f"{gateway.url}/v1/ranking", json=_body(PASSAGES[:2])).raise_for_status()
    httpx.post(f"{gateway.url}/v1/ranking", json={"query": {"text": QUERY}})
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'mxbai_gateway_requests_total{api="nim",code="200"}' in metrics
    assert 'mxbai_gateway_errors_total{api="nim",code="422",kind="invalid_input"}' in metrics


def test_api_keys_guard_the_ranking_route_for_nvidias_client(served, tmp_path):
    from langchain_core.documents import Document

    keys = tmp_path / "keys"
    keys.write_text("secret-key-1\n")
    with GatewayProcess(served.grpc_url, None, "--api-key-file", str(keys)) as process:
        refused = httpx.post(f"{process.url}/v1/ranking", json=_body(["a"]))
        right = nvidia.NVIDIARerank(base_url=f"{process.url}/v1", model="reranker", api_key="secret-key-1")
        ranked = right.compress_documents(documents=[Document(page_content="a"), Document(page_content="b")], query="q")
    assert (refused.status_code, refused.json()) == (401, _error(
        401, "missing or invalid API key: send 'Authorization: Bearer <key>'", None, "AuthenticationError"))
    assert sorted(d.page_content for d in ranked) == ["a", "b"]
