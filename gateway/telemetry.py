"""One rerank request as the gateway saw it (its id, what it asked, where its time went, its spans), published once:
timing headers on the answer, the access log line, the metrics, the trace."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

from mxbai_triton.core.telemetry import Timings

access_log = logging.getLogger("mxbai_triton.gateway.access")


@dataclass
class Exchange:
    """A request from its arrival to its answer. `tracer` None: no spans, nothing spent on them.

    Spans (children of the caller's `traceparent` when it sent one): `rerank` (the whole request), under it
    `authorize`, `parse`, `admit`, `score` (Triton's spans continue from this one) and `respond`.
    """

    request_id: str
    api: str
    tracer: object = None
    started: float = field(default_factory=time.monotonic)
    model: str = "-"
    level: str = ""
    documents: int = 0
    tokens: int = 0
    timings: Timings = Timings()
    total: float = 0.0  # seconds from arrival to answer, once finished
    _root: object = None
    _score: object = None

    def begin(self, headers, route: str) -> None:
        """Start the request's span, continuing the caller's trace from `headers`."""
        if self.tracer is None:
            return
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind

        self._root = self.tracer.start_span("rerank", extract(headers), kind=SpanKind.SERVER, attributes={
            "http.request.method": "POST", "http.route": route, "mxbai.request_id": self.request_id})

    @contextlib.contextmanager
    def phase(self, name: str):
        """A child span of the request for the block (nothing without a tracer)."""
        if self._root is None:
            yield None
            return
        from opentelemetry.trace import set_span_in_context

        span = self.tracer.start_span(name, set_span_in_context(self._root))
        if name == "score":
            self._score = span
        try:
            yield span
        finally:
            span.end()

    def trace_headers(self) -> dict[str, str]:
        """`traceparent` of the `score` span for Triton, only when it is sampled: Triton traces every request that
        carries one, whatever its sampled flag (server issue #8474), so an unsampled one is not passed on."""
        if self._score is None or not self._score.get_span_context().trace_flags.sampled:
            return {}
        from opentelemetry.propagate import inject
        from opentelemetry.trace import set_span_in_context

        carrier: dict[str, str] = {}
        inject(carrier, context=set_span_in_context(self._score))
        return carrier

    def scored(self, model: str, level: str, documents: int, tokens: int, timings: Timings) -> None:
        self.model, self.level, self.documents, self.tokens, self.timings = model, level, documents, tokens, timings

    def headers(self) -> dict[str, str]:
        """TEI's timing headers for the answer, success or error (zeros for phases the request never reached); the
        x-request-id header is the RequestIds middleware's."""
        return self.timings.with_total(self.total).headers(self.tokens)

    def finish(self, status: int, kind: str | None, log: bool) -> None:
        """Stop the clock, end the request's span and write its access line (`log`)."""
        total = self.total = time.monotonic() - self.started
        if self._root is not None:
            from opentelemetry.trace import Status, StatusCode

            self._root.set_attributes({"http.response.status_code": status, "mxbai.api": self.api, "mxbai.model": self.model,
                                       "mxbai.documents": self.documents, "mxbai.tokens": self.tokens})
            if status >= 500:
                self._root.set_status(Status(StatusCode.ERROR, kind or str(status)))
            self._root.end()
        if log:
            fields = self.log_fields(status, kind, total)
            text = " ".join(f"{k}={v}" for k, v in fields.items() if k != "id")
            access_log.info("request %s %s", self.request_id, text, extra={"fields": fields})

    def log_fields(self, status: int, kind: str | None, total: float) -> dict:
        t = self.timings
        return {"id": self.request_id, "api": self.api, "model": self.model, "class": self.level or "-", "status": status,
                "kind": kind or "-", "documents": self.documents, "tokens": self.tokens, "total_ms": _ms(total),
                "tokenization_ms": _ms(t.tokenization), "queue_ms": _ms(t.queue), "inference_ms": _ms(t.inference)}


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)
