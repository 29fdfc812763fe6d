"""The gateway's pure parts, without a server: error shapes, field names, score checks, request schemas and shapes,
truncate NONE, model discovery against fake Triton endpoints, the OpenAPI description."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest

pytest.importorskip("pydantic", reason="the gateway's schemas are pydantic models")

from mxbai_triton.client.transport import Scored  # noqa: E402
from mxbai_triton.core.errors import ErrorKind  # noqa: E402
from mxbai_triton.gateway.backend import BackendSettings, check_scored  # noqa: E402
from mxbai_triton.gateway.errors import APIError, error_body, validation_error  # noqa: E402
from mxbai_triton.gateway.schemas import CohereV2Request, JinaRequest  # noqa: E402


def test_each_api_gets_its_own_error_shape():
    error = APIError(ErrorKind.TOO_LARGE, "too many", "documents")
    assert error_body("cohere", error) == {"message": "too many"}
    assert error_body("tei", error) == {"error": "too many", "error_type": "Validation"}
    assert error_body("jina", error) == {"error": {"message": "too many", "type": "BadRequestError",
                                                  "param": "documents", "code": 413}}


def test_validation_errors_name_the_field_with_list_positions():
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as raised:
        JinaRequest.model_validate({"query": "q", "documents": ["a", {"txt": "b"}]})
    error = validation_error(raised.value.errors(include_url=False))
    assert (error.kind, error.field) == (ErrorKind.INVALID_INPUT, "documents[1]")
    assert error.message == "'documents[1]': Input should be a string or an object with a string 'text'"


def test_a_short_answer_from_triton_is_an_error_not_a_short_ranking():
    with pytest.raises(APIError, match="^Triton answered unusable scores$") as raised:
        check_scored(Scored(np.zeros(2, np.float32), np.ones(2, np.int64)), 3)
    assert (raised.value.kind, raised.value.detail) == (ErrorKind.BACKEND_ERROR, "Triton answered 2 scores for 3 documents")


def test_non_finite_scores_are_an_error_naming_the_documents_in_the_log():
    with pytest.raises(APIError) as raised:
        check_scored(Scored(np.array([0.5, np.nan, np.inf], np.float32), np.ones(3, np.int64)), 3)
    assert raised.value.detail == "Triton answered non-finite scores for documents [1, 2]"
    check_scored(Scored(np.array([0.5, -3.0], np.float32), np.array([7, 9])), 2)  # a good answer passes


def test_retries_must_stop_before_the_deadline():
    with pytest.raises(ValueError, match="--api-retry-for .* must be shorter than --api-timeout"):
        BackendSettings(urls=("h:1",), models=("m",), timeout=10, retry_for=10)


def test_cohere_documents_may_be_strings_or_text_objects():
    request = CohereV2Request.model_validate({"model": "m", "query": "q", "documents": ["a", {"text": "b"}]})
    assert request.texts() == ["a", "b"] and request.return_documents is False


# --- model discovery, in-process against fake Triton endpoints ---

class FakeTriton:
    """The two calls discovery makes, on an aio gRPC client: the repository index and a model's config."""

    def __init__(self, models: dict[str, bool] | Exception):
        self.models = models  # name -> is a rerank ensemble; or the error every call raises

    async def get_model_repository_index(self, client_timeout=None):
        if isinstance(self.models, Exception):
            raise self.models
        return {"models": [{"name": n, "state": "READY"} for n in self.models] + [{"name": "gone", "state": "UNAVAILABLE"}]}

    async def get_model_config(self, name, client_timeout=None):
        inputs = [{"name": "query", "data_type": "TYPE_STRING"}, {"name": "documents", "data_type": "TYPE_STRING"}]
        parameters = {"estimated_max": {}, "max_documents_per_request": {}} if self.models[name] else {"scorer_model": {}}
        return {"config": {"name": name, "input": inputs, "parameters": parameters}}


def _triton_error(message: str):
    from tritonclient.utils import InferenceServerException

    return InferenceServerException(message, status="StatusCode.UNAVAILABLE")


RESTRICTED = "This protocol is restricted, expecting header 'triton-grpc-protocol-admin-token'"


def _registry(*endpoints, wanted=(), removed=None):
    from mxbai_triton.gateway.registry import ModelRegistry

    return ModelRegistry({f"h:{i}": e for i, e in enumerate(endpoints)}, wanted,
                         on_removed=None if removed is None else removed.append)


def test_discovery_serves_the_rerank_ensembles_ready_on_any_endpoint_sorted():
    registry = _registry(FakeTriton({"b": True, "b_tokenizer": False}), FakeTriton({"a": True}))
    asyncio.run(registry.refresh())
    assert registry.models == ("a", "b")


def test_the_model_filter_keeps_its_order_and_drops_what_triton_does_not_serve():
    registry = _registry(FakeTriton({"a": True, "b": True, "c": True}), wanted=("b", "zz", "a"))
    asyncio.run(registry.refresh())
    assert registry.models == ("b", "a")


def test_a_triton_outage_keeps_serving_what_was_served():
    endpoint = FakeTriton({"a": True})
    registry = _registry(endpoint)
    asyncio.run(registry.refresh())
    endpoint.models = _triton_error("failed to connect to all addresses")
    asyncio.run(registry.refresh())
    assert registry.models == ("a",)
    assert registry.problem == "cannot list the models of Triton at h:0: failed to connect to all addresses"


def test_a_restricted_index_serves_the_named_models_as_given():
    registry = _registry(FakeTriton(_triton_error(RESTRICTED)), wanted=("m",))
    asyncio.run(registry.refresh())
    assert registry.models == ("m",)


def test_a_restricted_index_without_model_names_is_a_503_saying_to_name_them():
    registry = _registry(FakeTriton(_triton_error(RESTRICTED)))
    with pytest.raises(APIError, match="^no rerank ensemble to serve$") as raised:
        asyncio.run(registry.resolve(None))
    assert raised.value.kind is ErrorKind.BACKEND_UNAVAILABLE
    assert re.search(r"restricts its repository index .* --model", raised.value.detail)


def test_a_model_loaded_after_the_last_look_is_served_and_an_unknown_one_lists_the_served():
    endpoint = FakeTriton({"a": True})
    registry = _registry(endpoint)
    asyncio.run(registry.refresh())
    endpoint.models = {"a": True, "new": True}
    assert asyncio.run(registry.resolve("new")) == "new"
    with pytest.raises(APIError, match=r"^model 'nope' is not served here; served: a, new$") as raised:
        asyncio.run(registry.resolve("nope"))
    assert (raised.value.kind, raised.value.field) == (ErrorKind.NOT_FOUND, "model")


def test_models_that_go_are_reported_once():
    removed: list[set[str]] = []
    endpoint = FakeTriton({"a": True, "b": True})
    registry = _registry(endpoint, removed=removed)
    asyncio.run(registry.refresh())
    endpoint.models = {"a": True}
    asyncio.run(registry.refresh())
    asyncio.run(registry.refresh())
    assert (registry.models, removed) == (("a",), [{"b"}])


def test_a_model_is_a_reranker_by_its_inputs_and_parameters_not_its_name():
    from mxbai_triton.client.discovery import is_reranker, ready_models

    tokenizer_step = {"input": [{"name": "query", "data_type": "TYPE_STRING"}, {"name": "documents", "data_type": "TYPE_STRING"}],
                      "parameters": {"scorer_model": {"string_value": "x_scorer"}}}
    ensemble = {**tokenizer_step, "parameters": {"estimated_max": {}, "max_documents_per_request": {}}}
    wrong_dtype = {**ensemble, "input": [{"name": "query", "data_type": "TYPE_INT32"}, {"name": "documents", "data_type": "TYPE_STRING"}]}
    assert [is_reranker(c) for c in (tokenizer_step, ensemble, wrong_dtype)] == [False, True, False]
    assert ready_models([{"name": "b", "state": "READY"}, {"name": "a", "state": "READY"}, {"name": "c"}]) == ["a", "b"]


# --- request shapes and truncate NONE, without a server ---

def test_rerank_path_picks_the_shape_by_its_document_field():
    from mxbai_triton.gateway.schemas import TEIRequest, rerank_shape

    assert rerank_shape({"query": "q", "texts": []}) is TEIRequest
    assert rerank_shape({"query": "q", "documents": []}) is JinaRequest


@pytest.mark.parametrize("body, found", [({"query": "q"}, "neither 'texts' nor 'documents'"),
                                         ({"query": "q", "texts": [], "documents": []}, "both 'texts' and 'documents'")])
def test_a_rerank_body_with_both_fields_or_neither_says_what_each_shape_needs(body, found):
    from mxbai_triton.gateway.schemas import rerank_shape

    with pytest.raises(ValueError, match=rf"^the body has {found}: TEI's shape needs 'query' and 'texts' .*; the "
                                         r"Jina/vLLM shape needs 'query' and 'documents'"):
        rerank_shape(body)


def _refusal(counts, cap=100, truncate="NONE"):
    """The dispatch's refusal of a request whose documents' prompts have `counts` tokens (two sub-batches)."""
    from mxbai_triton.core.truncation import truncation_refusal

    counts = np.array(counts)
    half = len(counts) // 2
    rows = [(np.arange(half, len(counts)), counts[half:]), (np.arange(half), counts[:half])]
    return truncation_refusal({"truncate": truncate}, rows, cap)


def test_truncate_none_passes_documents_under_the_cap_and_names_those_at_it_in_input_order():
    from mxbai_triton.core.errors import kind_of_triton, untagged

    assert _refusal([99, 12, 50]) is None
    assert _refusal([100, 12, 100], truncate="END") is None
    refusal = _refusal([100, 12, 100])
    assert kind_of_triton("StatusCode.INVALID_ARGUMENT", refusal) is ErrorKind.TOO_LARGE
    assert re.match(r"^Input length of documents\[0\], documents\[2\] \(prompt template \+ query \+ document\) exceeds "
                    r"maximum allowed token size 99; allow truncation", untagged(refusal))


def test_truncate_none_names_ten_cut_documents_and_counts_the_rest():
    assert re.search(r"documents\[9\] and 2 more \(prompt", _refusal([100] * 12))


def test_an_unknown_truncate_value_is_refused_naming_the_parameter():
    with pytest.raises(ValueError, match="parameter 'truncate' must be one of END, NONE, got 'MIDDLE'"):
        _refusal([1], truncate="MIDDLE")


def test_nim_errors_have_nim_shape():
    assert error_body("nim", APIError(ErrorKind.NOT_FOUND, "no such model", "model")) == {
        "object": "error", "message": "no such model", "type": "NotFoundError", "param": "model", "code": 404}


def test_openapi_describes_every_route_with_its_request_body_and_is_served_at_docs():
    from fastapi.testclient import TestClient

    from mxbai_triton.gateway.app import create_app

    app = create_app(BackendSettings(urls=("127.0.0.1:1",)))
    schema = app.openapi()
    assert set(schema["paths"]) == {"/v2/rerank", "/v1/rerank", "/rerank", "/v1/ranking", "/v1/retrieval/{model}/reranking",
                                    "/v1/models", "/health", "/live", "/metrics"}
    bodies = {path: ops["post"]["requestBody"]["content"]["application/json"]["schema"]
              for path, ops in schema["paths"].items() if "post" in ops}
    assert bodies["/v1/ranking"] == {"$ref": "#/components/schemas/NIMRankingRequest"}
    assert bodies["/rerank"] == {"oneOf": [{"$ref": "#/components/schemas/TEIRequest"}, {"$ref": "#/components/schemas/JinaRequest"}]}
    components = schema["components"]["schemas"]
    assert {"CohereV2Request", "JinaRequest", "TEIRequest", "NIMRankingRequest", "TextDocument", "NIMRankingResponse"} <= set(components)
    assert components["NIMRankingRequest"]["properties"]["truncate"]["enum"] == ["NONE", "END"]
    assert TestClient(app).get("/docs").status_code == 200  # no keys: open


def test_an_answer_without_token_counts_is_an_error_saying_to_regenerate_the_repository():
    from mxbai_triton.client.transport import RerankError, Scored

    class OldServerResult:
        def as_numpy(self, name):
            return np.zeros((2, 1), np.float32) if name == "scores" else None

    with pytest.raises(RerankError, match="no 'token_counts': its repository was generated by an older mxbai-triton"):
        Scored.from_result(OldServerResult())
