"""Bad input through the wire gets a clear error naming the problem, and the server keeps serving."""

from __future__ import annotations

import numpy as np
import pytest

from mxbai_triton.client import RerankClient
from tests.conftest import SERVED_MAX_BATCH

pytestmark = pytest.mark.triton


def _raw(server, inputs: dict[str, list[bytes]]):
    import tritonclient.grpc as grpcclient

    tensors = []
    for name, values in inputs.items():
        t = grpcclient.InferInput(name, [len(values)], "BYTES")
        t.set_data_from_numpy(np.array(values, dtype=np.object_))
        tensors.append(t)
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        return client.infer("reranker", tensors).as_numpy("scores")


def _still_serving(server) -> None:
    with RerankClient(server.grpc_url, model="reranker") as client:
        assert len(client.rank("still there?", ["yes", "no"])) == 2


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"documents": [b"doc"]}, "query"),
        ({"query": [b"q"], "documents": []}, "'documents' is empty"),
        ({"query": [b"q"], "documents": [b"fine", b"\xff\xfe bad"]}, r"'documents\[1\]' is not valid UTF-8"),
        ({"query": [b"\xc3\x28"], "documents": [b"doc"]}, "'query' is not valid UTF-8"),
        ({"query": [b"q", b"r"], "documents": [b"doc"]}, r"unexpected shape for input 'query'.*Expected \[1\], got \[2\]"),
        ({"query": [b"q"], "documents": [b"d"] * (SERVED_MAX_BATCH + 1)}, f"per-request limit of {SERVED_MAX_BATCH}"),
    ],
    ids=["missing_query", "empty_documents", "invalid_utf8_document", "invalid_utf8_query", "two_queries", "over_limit"],
)
def test_bad_request_gets_clear_error_and_server_keeps_serving(served, inputs, message):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match=message):
        _raw(served, inputs)
    _still_serving(served)


def test_client_reports_server_errors_as_rerank_errors(served):
    from mxbai_triton.client import RerankError

    with RerankClient(served.grpc_url, model="no_such_model") as client:
        with pytest.raises(RerankError, match="no_such_model"):
            client.rank("q", ["d"])
