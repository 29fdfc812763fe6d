"""Length-aware dispatch on a real tritonserver: 1000-document raw requests of mixed lengths, scored in order,
short documents never padded to the long ones, sub-batches of concurrent requests merged in the scorer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from mxbai_triton.client import RerankClient
from mxbai_triton.model_repository.metrics_port import read_counters
from mxbai_triton.perf.workload import mixed_documents
from tests.conftest import SERVED_MAX_DOCUMENTS, settled_stats
from tests.reference import reference_scores
from tests.wire import model_statistics, raw_request, text

pytestmark = pytest.mark.triton

QUERY = "which documents talk about search relevance?"
# 998 retrieved chunks of mixed lengths and two 8k-token documents among them.
THOUSAND = mixed_documents(1000, 0.6, median=60, outliers=2, seed=1)


def _reference_by_length(oracle, query: str, documents: list[str]) -> np.ndarray:
    """The reference's scores, computed in length-sorted chunks (the 8k documents alone) to bound its memory."""
    order = np.argsort([len(d) for d in documents], kind="stable")
    rest = order[:-2]
    chunks = [rest[i:i + 100] for i in range(0, len(rest), 100)] + [order[-2:-1], order[-1:]]
    scores = np.empty(len(documents), dtype=np.float32)
    for chunk in chunks:
        scores[chunk] = reference_scores(oracle, query, [documents[i] for i in chunk])
    return scores


@pytest.fixture(scope="module")
def served_default(tiny_export, tmp_path_factory):
    """The tiny export with the default limits (1000 documents per request), portable target and padding."""
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.model_repository.generate import generate_repository
    from mxbai_triton.model_repository.server import TritonServer

    repository = generate_repository(tmp_path_factory.mktemp("default-repository"), ModelSpec.load(tiny_export),
                                     target="portable", name="reranker", export_dir=tiny_export)
    with TritonServer.on_free_ports(repository, stop_grace=0) as server:
        yield server


@pytest.fixture(scope="module")
def thousand_reference(oracle):
    return _reference_by_length(oracle, QUERY, THOUSAND)


def _thousand_request(documents=THOUSAND):
    return {"query": text(QUERY.encode()), "documents": text(*(d.encode() for d in documents))}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_raw_1000_document_request_scores_like_the_reference_in_input_order(served_default, thousand_reference, protocol):
    before = read_counters(served_default.metrics_url)
    scores = raw_request(served_default, protocol, _thousand_request())
    after = read_counters(served_default.metrics_url)
    np.testing.assert_allclose(scores, thousand_reference, atol=1e-4, rtol=0)
    real = after["mxbai_dispatch_real_tokens"] - before["mxbai_dispatch_real_tokens"]
    padded = after["mxbai_dispatch_padded_tokens"] - before["mxbai_dispatch_padded_tokens"]
    assert after["mxbai_dispatch_documents"] - before["mxbai_dispatch_documents"] == 1000
    # Padded to their own longest neighbour, not to 8k: per request the scorer computed at most 1.15x
    # the real tokens (padding every row to the outliers' length would be ~100x).
    assert padded <= 1.15 * real, (padded, real)


def test_more_documents_than_the_request_limit_get_an_error_naming_the_limit(served_default):
    import tritonclient.utils

    with pytest.raises(tritonclient.utils.InferenceServerException,
                       match="'documents' has 1001 items, more than the per-request limit of 1000"):
        raw_request(served_default, "grpc", _thousand_request(THOUSAND + ["one more"]))


def test_the_ensemble_publishes_the_request_limit(served_default):
    with RerankClient(served_default.grpc_url, model="reranker") as client:
        assert client.limits.max_documents == 1000


def _scorer_counts(server) -> tuple[int, int]:
    """The scorer's (rows scored, executions) in Triton's statistics."""
    stats = model_statistics(server, "reranker_scorer")
    return stats.inference_count, stats.execution_count


# Whether two requests' sub-batches meet in the scorer's queue within its 20 ms delay depends on how the machine
# schedules the callers (a loaded one can run them one after the other): a round that merged nothing is run again,
# up to this many rounds, instead of a delay that would slow every other test of the server.
MERGE_ROUNDS = 5


def test_sub_batches_of_concurrent_mixed_requests_merge_in_the_scorer(served, oracle):
    # Mixed lengths within each request; the same list in each, so that their sub-batches share padded lengths: the
    # batcher merges only equal shapes (no ragged batching: docs/scheduling.md).
    documents = mixed_documents(SERVED_MAX_DOCUMENTS, 0.6, median=30, seed=20)
    queries = [(f"query {q}", documents) for q in range(8)]
    expected = [reference_scores(oracle, query, documents) for query, documents in queries]
    with RerankClient(served.grpc_url, model="reranker") as client, ThreadPoolExecutor(len(queries)) as pool:
        for _ in range(MERGE_ROUNDS):
            before, (rows_before, executions_before) = read_counters(served.metrics_url), _scorer_counts(served)
            results = list(pool.map(lambda w: client.scores(*w), queries))
            sub_batches = (read_counters(served.metrics_url)["mxbai_dispatch_sub_batches"]
                           - before["mxbai_dispatch_sub_batches"])
            # Statistics are recorded after the answers are sent: read them once every row is counted.
            rows, executions = settled_stats(lambda: _scorer_counts(served), rows_before + len(documents) * len(queries))
            for scores, reference in zip(results, expected):
                np.testing.assert_allclose(scores, reference, atol=1e-4, rtol=0)
            assert sub_batches > len(queries)  # each request was cut by length (and by the 16-row engine limit)
            assert rows - rows_before == len(documents) * len(queries)
            if executions - executions_before < sub_batches:
                break
    assert executions - executions_before < sub_batches
