"""End to end on a real tritonserver: ensemble scores equal the reference, requests merge, bad input is refused."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from mxbai_triton.client import RerankClient
from tests.cases import LONG_CASES, PARITY_CASES
from tests.conftest import SERVED_MAX_DOCUMENTS, serve_command, settled_stats

pytestmark = pytest.mark.triton

QUERIES = [
    ("Who wrote 'To Kill a Mockingbird'?", None),
    ("best pasta recipe", "Find cooking instructions"),
    ("Wer schrieb Faust?", None),
    ("🍕 near me?", "Prefer local results"),
    ("cafe\u0301", None),
    ("capital of France", None),
]
DOCUMENTS = ["Harper Lee wrote it.", "Boil water, add salt.", "", "Goethe schrieb Faust.", "Paris is the capital."]


def _scorer_stats(server):
    """(successful requests, executions) of the scorer."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        stats = client.get_inference_statistics("reranker_scorer").model_stats[0]
    return stats.inference_stats.success.count, stats.execution_count


def test_ensemble_scores_match_reference_for_concurrent_queries(served, oracle):
    requests_before, executions_before = _scorer_stats(served)
    with RerankClient(served.grpc_url, model="reranker") as client, ThreadPoolExecutor(len(QUERIES) * 2) as pool:
        jobs = [(q, i, pool.submit(client.scores, q, DOCUMENTS, instruction=i)) for q, i in QUERIES * 2]
        results = [(q, i, job.result()) for q, i, job in jobs]
    for query, instruction, ours in results:
        expected = oracle.predict([query] * len(DOCUMENTS), DOCUMENTS, instruction=instruction).numpy()
        np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)
        assert np.argsort(-ours, kind="stable").tolist() == np.argsort(-expected, kind="stable").tolist()
    requests, executions = settled_stats(lambda: _scorer_stats(served), requests_before + len(jobs))
    # The dynamic batcher merged concurrent requests: fewer executions than requests.
    assert requests - requests_before == len(jobs)
    assert executions - executions_before < len(jobs)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_rank_sorts_by_score_and_honours_top_k_and_return_documents(served, oracle, protocol):
    url = served.grpc_url if protocol == "grpc" else served.http_url
    with RerankClient(url, model="reranker", protocol=protocol) as client:
        ranked = client.rank("who wrote it?", DOCUMENTS, top_k=3)
        bare = client.rank("who wrote it?", DOCUMENTS, return_documents=False)
    expected = oracle.predict(["who wrote it?"] * len(DOCUMENTS), DOCUMENTS).numpy()
    order = np.argsort(-expected, kind="stable").tolist()
    assert [r.index for r in ranked] == order[:3]
    assert [r.document for r in ranked] == [DOCUMENTS[i] for i in order[:3]]
    assert [r.index for r in bare] == order and all(r.document is None for r in bare)
    np.testing.assert_allclose([r.score for r in bare], expected[order], atol=1e-4)


def test_normalize_matches_reference_formula(served, oracle):
    from mxbai_rerank.utils import sigmoid_normalize

    with RerankClient(served.http_url, model="reranker", protocol="http") as client:
        normalized = client.scores("who?", DOCUMENTS, normalize=True)
    expected = sigmoid_normalize(oracle.predict(["who?"] * len(DOCUMENTS), DOCUMENTS).numpy(), estimated_max=12.0)
    np.testing.assert_allclose(normalized, expected, atol=1e-5)


def test_client_splits_lists_above_the_server_limit_and_keeps_order(served, oracle):
    documents = [f"document number {i} about topic {i % 3}" for i in range(SERVED_MAX_DOCUMENTS * 2 + 3)]
    with RerankClient(served.grpc_url, model="reranker") as client:
        assert client.limits.max_documents == SERVED_MAX_DOCUMENTS
        ours = client.scores("topic 1", documents)
    expected = oracle.predict(["topic 1"] * len(documents), documents).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-4)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_async_client_ranks_like_the_sync_client(served, protocol):
    import asyncio

    from mxbai_triton.client import AsyncRerankClient

    url = served.grpc_url if protocol == "grpc" else served.http_url
    documents = DOCUMENTS * 5  # above the per-request limit: chunks go concurrently

    async def run():
        async with AsyncRerankClient(url, model="reranker", protocol=protocol) as client:
            return await asyncio.gather(*(client.rank(q, documents, instruction=i) for q, i in QUERIES))

    async_results = asyncio.run(run())
    with RerankClient(served.grpc_url, model="reranker") as client:
        sync_results = [client.rank(q, documents, instruction=i) for q, i in QUERIES]
    for a, s in zip(async_results, sync_results):
        assert [r.index for r in a] == [r.index for r in s]
        np.testing.assert_allclose([r.score for r in a], [r.score for r in s], atol=1e-6)


def test_tokens_of_every_parity_case_score_like_the_reference(served, oracle):
    """The tokenizer backend runs the same preprocessing the parity tests pin, through the wire."""
    cases = [c for c in PARITY_CASES if c[4] is None and c[0] not in LONG_CASES]
    with RerankClient(served.grpc_url, model="reranker") as client:
        for _, query, documents, instruction, _ in cases:
            ours = client.scores(query, documents, instruction=instruction)
            expected = oracle.predict([query] * len(documents), documents, instruction=instruction).numpy()
            np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)


def test_rank_command_labels_both_scores_raw_and_relevance(served, oracle):
    import json
    import subprocess
    import sys

    from mxbai_rerank.utils import sigmoid_normalize

    documents = ["Harper Lee wrote it.", "Stock markets fell."]
    command = [sys.executable, "-m", "mxbai_triton", "rank", "--url", served.http_url, "--protocol", "http",
               "--model", "reranker", "--query", "who wrote it?", *documents]
    table = subprocess.run(command, capture_output=True, text=True, timeout=120)
    as_json = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=120)
    assert table.returncode == 0 and as_json.returncode == 0, table.stderr + as_json.stderr

    raw = oracle.predict(["who wrote it?"] * 2, documents).numpy()
    relevance = sigmoid_normalize(raw, estimated_max=12.0)  # the stand-in is an unknown model: 12.0, as the reference
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [r["index"] for r in lines] == sorted(range(2), key=lambda i: -raw[i])
    for r in lines:
        assert (r["score"], r["document"]) == (r["raw_score"], documents[r["index"]])
        assert abs(r["raw_score"] - raw[r["index"]]) < 1e-4 and abs(r["relevance_score"] - relevance[r["index"]]) < 1e-4
    header, *rows, legend = table.stdout.splitlines()[1:]
    assert header.split() == ["rank", "doc", "raw", "relevance", "document"]
    assert [row.split()[2:4] for row in rows] == [[f"{r['raw_score']:+.4f}", f"{r['relevance_score']:.4f}"] for r in lines]
    assert legend.startswith('raw = logit("1") - logit("0")') and "relevance = sigmoid(raw - 12/2)" in legend


def test_a_passed_deadline_raises_a_clear_deadline_error_and_is_not_retried(served):
    from mxbai_triton.client import RerankError, RetryPolicy
    from mxbai_triton.core.errors import ErrorKind

    policy = RetryPolicy(attempts=2, initial_backoff=0.01)
    with RerankClient(served.grpc_url, model="reranker", timeout=1e-4, retry=policy) as client:
        # Whichever timer catches it first (gRPC's "Deadline Exceeded", Triton's "Request timeout expired"), the
        # error names the deadline and the one try.
        with pytest.raises(RerankError, match=r"no answer before the request's deadline \(1 tries ") as caught:
            client.rank("q", ["a document that takes longer than 0.1 ms"])
        assert (caught.value.kind, client.stats.retries) == (ErrorKind.DEADLINE_EXCEEDED, 0)


def test_serve_command_reports_ready_binds_loopback_and_stops_on_sigterm(tiny_repository):
    import signal
    import subprocess
    import urllib.request

    command, ports = serve_command(tiny_repository)
    http = ports["http"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready = next(line for line in process.stdout if "models ready" in line)
        assert f"HTTP 127.0.0.1:{http}" in ready
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/rr/ready", timeout=5) as response:
            assert response.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0


def test_rank_command_takes_several_urls_and_skips_a_dead_one(served):
    import subprocess
    import sys

    from mxbai_triton.processes import free_port

    run = subprocess.run(
        [sys.executable, "-m", "mxbai_triton", "-v", "rank", "--url", f"127.0.0.1:{free_port()}", "--url", served.grpc_url,
         "--model", "reranker", "--query", "who wrote it?", "Harper Lee wrote it.", "Stock markets fell."],
        capture_output=True, text=True, timeout=120,
    )
    # -v: every try and its endpoint's error are in the failure message.
    assert run.returncode == 0, (served.process.poll(), run.stderr)
    assert "Harper Lee wrote it." in run.stdout and "Stock markets fell." in run.stdout
