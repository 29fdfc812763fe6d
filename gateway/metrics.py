"""Prometheus metrics of the gateway: requests by API and status, latency histograms (by API, status class and request
class), documents and tokens per request."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from mxbai_triton.core.telemetry import LATENCY_BUCKETS, TOKEN_BUCKETS

# The *_created series double the output and no dashboard reads them.
disable_created_metrics()

_DOCUMENT_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000)


class GatewayMetrics:
    """One registry per gateway (not the process-global one), rendered at /metrics."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("mxbai_gateway_requests", "rerank requests answered, by API and HTTP status",
                                ["api", "code"], registry=r)
        self.errors = Counter("mxbai_gateway_errors", "rerank requests answered with an error, by API, HTTP status and "
                              "error kind (docs/errors.md)", ["api", "code", "kind"], registry=r)
        # `code_class` 2xx/4xx/5xx; `class` interactive or bulk once admitted, "none" for requests refused before.
        self.latency = Histogram("mxbai_gateway_request_duration_seconds", "time from request to response, by API, "
                                 "status class and request class", ["api", "code_class", "class"], buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.documents = Histogram("mxbai_gateway_documents_per_request", "documents in each scored request",
                                   ["api"], buckets=_DOCUMENT_BUCKETS, registry=r)
        self.tokens = Counter("mxbai_gateway_prompt_tokens", "prompt tokens scored (after truncation)", ["api"], registry=r)
        self.request_tokens = Histogram("mxbai_gateway_request_tokens", "prompt tokens of each scored request", ["api"],
                                        buckets=TOKEN_BUCKETS, registry=r)
        self.in_flight = Gauge("mxbai_gateway_requests_in_flight", "rerank requests being answered", registry=r)
        self.shed_requests = Counter("mxbai_gateway_shed", "requests refused at once at the admission bound, by class "
                                     "and by the bound that was full (requests, tokens)", ["class", "bound"], registry=r)
        self.admitted_requests = Gauge("mxbai_gateway_admitted_requests", "admitted requests being scored, by class",
                                       ["class"], registry=r)
        self.admitted_tokens = Gauge("mxbai_gateway_admitted_tokens", "prompt-token bound of the admitted requests being "
                                     "scored, by class", ["class"], registry=r)

    def answered(self, api: str, status: int, seconds: float, kind: str | None = None, level: str = "") -> None:
        self.requests.labels(api, str(status)).inc()
        if status >= 400:
            self.errors.labels(api, str(status), kind or "").inc()
        self.latency.labels(api, f"{status // 100}xx", level or "none").observe(seconds)

    def shed(self, level: str, bound: str) -> None:
        self.shed_requests.labels(level, bound).inc()

    def admitted(self, level: str, requests: int, tokens: int) -> None:
        self.admitted_requests.labels(level).set(requests)
        self.admitted_tokens.labels(level).set(tokens)

    def scored(self, api: str, documents: int, tokens: int) -> None:
        self.documents.labels(api).observe(documents)
        self.tokens.labels(api).inc(tokens)
        self.request_tokens.labels(api).observe(tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)
