"""What an operator sees of requests on a real tritonserver behind the gateway: timing headers and one request id on every
API's answers, histograms that count the requests made, the metrics the Grafana dashboard reads, and one trace across
the gateway, Triton and the dispatch (docs/observability.md)."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import httpx
import pytest

from mxbai_triton.core.telemetry import REQUEST_ID_HEADER, TIMING_HEADERS
from mxbai_triton.gateway.process import GatewayProcess
from mxbai_triton.perf.otlp_receiver import OTLPReceiver
from tests.waiting import GUARD

pytestmark = pytest.mark.triton

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "monitoring" / "grafana-dashboard.json"
QUERY = "Who wrote 'To Kill a Mockingbird'?"
DOCUMENTS = ["Harper Lee wrote it in 1960.", "Boil water, add salt.", "Goethe schrieb Faust."]
# Each API's route, a body it scores, and a body it refuses (after the gateway's clock started).
APIS = {
    "cohere": ("/v2/rerank", {"model": "reranker", "query": QUERY, "documents": DOCUMENTS},
               {"model": "reranker", "query": QUERY, "documents": DOCUMENTS, "top_n": 0}),
    "jina": ("/v1/rerank", {"model": "reranker", "query": QUERY, "documents": DOCUMENTS},
             {"model": "no-such-model", "query": QUERY, "documents": DOCUMENTS}),
    "tei": ("/rerank", {"query": QUERY, "texts": DOCUMENTS}, {"query": QUERY}),
    "nim": ("/v1/ranking", {"model": "reranker", "query": {"text": QUERY}, "passages": [{"text": d} for d in DOCUMENTS]},
            {"model": "reranker", "passages": [{"text": d} for d in DOCUMENTS]}),
}


@pytest.fixture(scope="module")
def gateway(served):
    with GatewayProcess(served.grpc_url, "reranker") as process:
        yield process


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _scrape(url: str) -> tuple[dict[tuple, float], set[str]]:
    """Samples {(name, labels): value} of a Prometheus endpoint, and every name a query can select there: the
    samples' names as exposed, and those of families declared without samples yet (`# TYPE`)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples, names = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            names |= {name + suffix for suffix in ("_bucket", "_sum", "_count")} if kind == "histogram" else {name}
        elif (match := _SAMPLE.match(line)) is not None:
            name, labels, value = match.groups()
            samples[name, frozenset(_LABEL.findall(labels or ""))] = float(value)
            names.add(name)
    return samples, names


def _total(samples: dict[tuple, float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls)


@pytest.mark.parametrize("api", APIS)
def test_every_answer_carries_the_request_id_and_timing_headers_and_total_covers_queue_and_inference(gateway, api):
    route, good, bad = APIS[api]
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        scored = client.post(route, json=good, headers={REQUEST_ID_HEADER: f"{api}-ok-1"})
        refused = client.post(route, json=bad, headers={REQUEST_ID_HEADER: f"{api}-bad-1"})
    assert scored.status_code == 200 and refused.status_code in (400, 404, 422), (scored.text, refused.text)
    for answer, rid in ((scored, f"{api}-ok-1"), (refused, f"{api}-bad-1")):
        assert answer.headers[REQUEST_ID_HEADER] == rid
        ms = {name: int(answer.headers[name]) for name in TIMING_HEADERS}
        tokenization, queue, inference = ms["x-tokenization-time"], ms["x-queue-time"], ms["x-inference-time"]
        assert ms["x-total-time"] >= tokenization + queue + inference >= 0
    assert int(scored.headers["x-compute-tokens"]) > 0 and int(refused.headers["x-compute-tokens"]) == 0
    if "id" in scored.json():  # the APIs whose answers have an id (Cohere, Jina) answer the request's
        assert scored.json()["id"] == f"{api}-ok-1"
    # The dispatch measured where the time went: the server-timing header keeps the microseconds.
    inference = float(re.search(r"inference;dur=([0-9.]+)", scored.headers["server-timing"]).group(1))
    assert inference > 0


def test_the_grpc_client_result_carries_the_timings_and_its_request_id(served):
    from mxbai_triton.client import RerankClient

    with RerankClient(served.grpc_url, model="reranker") as client:
        scored = client.scored(QUERY, DOCUMENTS, request_id="grpc-1")
        split = client.scored(QUERY, DOCUMENTS * 9, request_id="grpc-2")  # above the server's limit: two calls
    t = scored.timings
    assert scored.request_id == "grpc-1" and scored.compute_tokens == int(scored.token_counts.sum()) > 0
    assert t.tokenization > 0 and t.inference > 0 and t.total >= t.tokenization + t.queue + t.inference
    assert len(split.scores) == len(DOCUMENTS) * 9 and split.request_id == "grpc-2"
    assert split.timings.total >= split.timings.tokenization + split.timings.queue + split.timings.inference


def test_histograms_count_exactly_the_requests_made(gateway, served):
    before_gateway, _ = _scrape(gateway.url)
    before_triton, _ = _scrape(served.metrics_url)
    tokens = []
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        for api in ("cohere", "cohere", "tei"):
            route, good, _ = APIS[api]
            answer = client.post(route, json=good)
            assert answer.status_code == 200, answer.text
            tokens.append(int(answer.headers["x-compute-tokens"]))
        assert client.post(APIS["cohere"][0], json=APIS["cohere"][2]).status_code == 400
    gateway_now, _ = _scrape(gateway.url)
    triton_now, _ = _scrape(served.metrics_url)

    def made(now, before, name, **labels):
        return _total(now, name, **labels) - _total(before, name, **labels)

    latency = "mxbai_gateway_request_duration_seconds_count"
    assert made(gateway_now, before_gateway, latency, api="cohere", code_class="2xx", **{"class": "interactive"}) == 2
    assert made(gateway_now, before_gateway, latency, api="tei", code_class="2xx") == 1
    assert made(gateway_now, before_gateway, latency, api="cohere", code_class="4xx", **{"class": "none"}) == 1
    assert made(gateway_now, before_gateway, "mxbai_gateway_request_tokens_sum") == sum(tokens)
    assert made(triton_now, before_triton, "mxbai_dispatch_request_duration_seconds_count") == 3
    assert made(triton_now, before_triton, "mxbai_dispatch_request_tokens_count") == 3
    assert made(triton_now, before_triton, "mxbai_dispatch_request_tokens_sum") == sum(tokens)
    sub_batches = made(triton_now, before_triton, "mxbai_dispatch_sub_batches")
    assert sub_batches >= 3
    for name in ("mxbai_dispatch_queue_wait_seconds_count", "mxbai_dispatch_execution_seconds_count"):
        assert made(triton_now, before_triton, name) == sub_batches


def _dashboard_metrics() -> set[str]:
    """Every metric name in the dashboard's PromQL: label matchers, ranges, grouping clauses and functions left out."""
    dashboard = json.loads(DASHBOARD.read_text())
    names = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = re.sub(r"\b(by|without)\s*\([^)]*\)|\{[^}]*\}|\[[^\]]*\]", " ", target["expr"])
            names |= set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr)) - {"by", "without", "and", "or"}
    return names


def test_every_metric_the_dashboard_queries_is_exposed_by_a_running_server(gateway, served):
    with httpx.Client(base_url=gateway.url, timeout=60) as client:  # histograms have series once observed
        assert client.post(APIS["cohere"][0], json=APIS["cohere"][1]).status_code == 200
    exposed = _scrape(gateway.url)[1] | _scrape(served.metrics_url)[1]
    wanted = _dashboard_metrics()
    assert len(wanted) >= 15 and any(n.startswith("nv_inference_") for n in wanted)
    assert sorted(wanted - exposed) == []


@pytest.fixture(scope="module")
def traced(tiny_repository):
    """Triton and the gateway with OpenTelemetry on (the OTEL_* variables, as `serve` maps them), exporting to a
    receiver in this process."""
    from mxbai_triton.model_repository.server import TritonServer
    from mxbai_triton.model_repository.trace_config import trace_args, trace_settings

    with OTLPReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "rerank-test",
               "OTEL_BSP_SCHEDULE_DELAY": "50"}  # export every 50 ms (Python SDK and Triton), not 5 s
        settings = trace_args(trace_settings(env, behind_gateway=True))
        with TritonServer.on_free_ports(tiny_repository, stop_grace=0, env=env, extra_args=settings) as server, \
                GatewayProcess(server.grpc_url, "rr", env=env) as gateway:
            yield receiver, gateway


def test_one_request_yields_gateway_triton_and_dispatch_spans_in_the_callers_trace_parented_correctly(traced):
    receiver, gateway = traced
    trace_id, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    answer = httpx.post(f"{gateway.url}/v2/rerank", json={"model": "rr", "query": QUERY, "documents": DOCUMENTS},
                        headers={"traceparent": f"00-{trace_id}-{caller_span}-01", REQUEST_ID_HEADER: "traced-1"}, timeout=60)
    assert answer.status_code == 200, answer.text

    def complete(spans):
        names = [s.name for s in spans]
        return {"rerank", "score", "InferRequest", "rr_tokenizer", "rr_scorer", "dispatch"} <= set(names) \
            and names.count("sub_batch") == names.count("rr_scorer") >= 1

    spans = receiver.wait_for(trace_id, complete, limit=GUARD)
    assert complete(spans), (" ".join(sorted(s.name for s in spans)),
                             sorted({(s.trace_id, s.service, s.name) for s in receiver.spans if s.trace_id != trace_id}))
    one = {s.name: s for s in spans}
    assert {s.service for s in spans} == {"rerank-test", "rerank-test-triton", "rerank-test-dispatch"}
    # the caller's span -> rerank -> score -> Triton's request -> the ensemble's tokenizer step (the client calls the
    # step itself, which sees a cancellation; the ensemble would not)
    assert one["rerank"].parent_id == caller_span and one["score"].parent_id == one["rerank"].span_id
    assert one["InferRequest"].parent_id == one["score"].span_id
    assert one["rr_tokenizer"].parent_id == one["InferRequest"].span_id
    # the tokenizer step's children: its dispatch (ours, one sub_batch span per scorer call) and the scorer calls
    assert one["dispatch"].parent_id == one["rr_tokenizer"].span_id
    scorer_calls = {s.attributes["triton.request_id"]: s for s in spans if s.name == "rr_scorer"}
    for sub_batch in (s for s in spans if s.name == "sub_batch"):
        assert sub_batch.parent_id == one["dispatch"].span_id
        assert scorer_calls[sub_batch.attributes["triton.request_id"]].parent_id == one["rr_tokenizer"].span_id
    # the request id reached Triton: its span of the tokenizer step names it, the scorer calls extend it
    assert one["rr_tokenizer"].attributes["triton.request_id"] == "traced-1"
    assert all(rid.startswith("traced-1.b") for rid in scorer_calls)
