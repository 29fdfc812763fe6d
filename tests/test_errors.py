"""One error table: every kind is answered with the table's status and type in every API (through the app, in-process),
the OpenAPI page lists exactly the table's statuses, docs/errors.md is the table, and Triton's statuses map back."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the gateway is a FastAPI app")

from fastapi.testclient import TestClient  # noqa: E402

from mxbai_triton.core.errors import APIS, KINDS, ErrorKind, kind_of_triton, markdown_table, tagged  # noqa: E402
from mxbai_triton.core.telemetry import TIMING_HEADERS  # noqa: E402
from mxbai_triton.gateway.app import create_app  # noqa: E402
from mxbai_triton.gateway.backend import BackendSettings  # noqa: E402
from mxbai_triton.gateway.errors import APIError  # noqa: E402
from mxbai_triton.gateway.openapi import error_statuses  # noqa: E402
from tests.doc_blocks import DOC_BLOCKS, DOCS, block  # noqa: E402

# One request per API, and where its body keeps the error's type.
ROUTES = {
    "cohere": ("/v2/rerank", {"model": "m", "query": "q", "documents": ["a"]}, lambda body: None),
    "jina": ("/v1/rerank", {"query": "q", "documents": ["a"]}, lambda body: body["error"]["type"]),
    "tei": ("/rerank", {"query": "q", "texts": ["a"]}, lambda body: body["error_type"]),
    "nim": ("/v1/ranking", {"query": {"text": "q"}, "passages": [{"text": "a"}]}, lambda body: body["type"]),
}
# What the client sees of a cancelled request is its own disconnect: no answer to compare.
ANSWERED = [k for k in ErrorKind if k is not ErrorKind.CANCELLED]


@pytest.fixture(scope="module")
def failing(request):
    """The app with its scoring call raising whatever kind `failing.kind` names."""
    from mxbai_triton.gateway.serving import RerankServing

    state = {"kind": ErrorKind.INTERNAL}

    async def rank(self, rank_request, allowance, deadline, exchange=None):
        raise APIError(state["kind"], f"failed: {state['kind'].value}", retry_after=2.0)

    patch = pytest.MonkeyPatch()
    patch.setattr(RerankServing, "rank", rank)
    with TestClient(create_app(BackendSettings(urls=("127.0.0.1:1",), models=("m",)))) as client:
        yield state, client
    patch.undo()


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("kind", ANSWERED, ids=lambda k: k.value)
def test_every_kind_is_answered_with_the_tables_status_and_type_in_every_api(failing, kind, api):
    state, client = failing
    state["kind"] = kind
    path, body, error_type = ROUTES[api]
    response = client.post(path, json=body)
    rule = KINDS[kind]
    assert response.status_code == rule.status(api)
    assert error_type(response.json()) == rule.error_type(api)
    assert response.headers["retry-after"] == "2"
    # An error answer carries the request's id and TEI's timing headers too (zeros: nothing was scored).
    assert response.headers["x-compute-tokens"] == "0" and response.headers["x-request-id"]
    assert all(response.headers[name].isdigit() for name in TIMING_HEADERS)
    if api in ("jina", "nim"):
        code = response.json()["error"]["code"] if api == "jina" else response.json()["code"]
        assert code == rule.status(api)


def test_the_openapi_page_lists_exactly_the_tables_statuses_for_each_route():
    schema = create_app(BackendSettings(urls=("127.0.0.1:1",))).openapi()
    routes = {"/v2/rerank": "cohere", "/v1/rerank": "jina", "/rerank": "tei", "/v1/ranking": "nim",
              "/v1/retrieval/{model}/reranking": "nim"}
    for path, api in routes.items():
        listed = {int(s) for s in schema["paths"][path]["post"]["responses"]} - {200, 422} | (
            {422} if 422 in error_statuses(api) else set())
        assert listed == {KINDS[k].status(api) for k in ANSWERED}, path
        assert set(error_statuses(api)) == {KINDS[k].status(api) for k in ANSWERED}


def test_the_error_page_shows_the_table_the_code_has():
    page = DOCS / "errors.md"
    assert block(page.read_text(encoding="utf-8"), "error-kinds") == DOC_BLOCKS[page]["error-kinds"]() == markdown_table()


@pytest.mark.parametrize("kind", list(ErrorKind), ids=lambda k: k.value)
def test_a_kind_tagged_in_a_triton_message_comes_back_as_that_kind(kind):
    assert kind_of_triton("StatusCode.INVALID_ARGUMENT", "rr_tokenizer: " + tagged(kind, "why")) is kind


def test_each_grpc_status_of_the_table_reads_back_as_a_kind_with_that_status():
    for rule in KINDS.values():
        assert KINDS[kind_of_triton(f"StatusCode.{rule.grpc}", "no tag")].grpc == rule.grpc
