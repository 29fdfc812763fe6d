"""The dispatch's view of one request's time: each sub-batch's wait and execution, the request's `timings` output,
its histograms on Triton's metrics port, its OpenTelemetry spans and its log line."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from mxbai_triton.core.telemetry import EXECUTION, LATENCY_BUCKETS, TOKEN_BUCKETS, Timings, busy_seconds
from mxbai_triton.core.tracing import DISPATCH_SUFFIX, service_name, tracer_provider

# Set by TritonServer when Triton logs verbosely (`serve -v`): the dispatch writes one line per request there.
LOG_REQUESTS_ENV = "MXBAI_TRITON_LOG_REQUESTS"

# Histograms the tokenizer step publishes beside its counters (label `model`, and `class`).
HISTOGRAMS = {
    "mxbai_dispatch_queue_wait_seconds": ("seconds from a sub-batch being ready to the scorer starting it (to its send "
                                          "where the scorer reports no execution), by class", LATENCY_BUCKETS),
    "mxbai_dispatch_execution_seconds": ("seconds the scorer executed a sub-batch (its round trip where the scorer "
                                         "reports no execution), by class", LATENCY_BUCKETS),
    "mxbai_dispatch_request_duration_seconds": ("seconds from a request's tokenization to its last answer, by class",
                                                LATENCY_BUCKETS),
    "mxbai_dispatch_request_tokens": ("prompt tokens of each request, by class", TOKEN_BUCKETS),
}


@dataclass
class SubBatchTimes:
    """When one sub-batch was sent and answered, and when the scorer ran it (None: not reported), monotonic seconds."""

    index: int
    rows: int
    padded_length: int
    real_tokens: int
    sent: float
    answered: float
    execution: tuple[float, float] | None

    @property
    def executed(self) -> tuple[float, float]:
        """The scorer's execution within the round trip (the round trip itself when the scorer reports none)."""
        if self.execution is None:
            return self.sent, self.answered
        start, end = self.execution
        return min(max(start, self.sent), self.answered), max(min(end, self.answered), self.sent)


@dataclass
class RequestTimes:
    """One request's dispatch on the monotonic clock: ready after `tokenization` seconds, then its sub-batches."""

    request_id: str
    tokenization: float
    ready: float = field(default_factory=time.monotonic)
    sub_batches: list[SubBatchTimes] = field(default_factory=list)
    finished: float | None = None

    def answered(self, index: int, batch, sent: float, answer, pb) -> None:
        """Record sub-batch `index` (a SubBatch) sent at `sent` and answered now with `answer`."""
        execution = None
        if not answer.has_error():
            reported = pb.get_output_tensor_by_name(answer, EXECUTION.name)
            if reported is not None:
                start, end = reported.as_numpy().reshape(-1, 2)[0]
                execution = (int(start) / 1e9, int(end) / 1e9)
        self.sub_batches.append(SubBatchTimes(index, len(batch.rows), int(batch.input_ids.shape[1]), batch.real_tokens,
                                              sent, time.monotonic(), execution))

    def finish(self) -> Timings:
        self.finished = time.monotonic()
        dispatch = self.finished - self.ready
        inference = busy_seconds(b.executed for b in self.sub_batches)
        return Timings(tokenization=self.tokenization, queue=max(0.0, dispatch - inference), inference=inference,
                       dispatch=dispatch)

    def sub_batch_id(self, index: int) -> str:
        """The Triton request id of sub-batch `index`: the request's with ".b<index>" (none without one)."""
        return f"{self.request_id}.b{index}" if self.request_id else ""


class DispatchHistograms:
    """Histograms on Triton's metrics port (python backend 24.08+); None of them on an older backend, said in its log."""

    def __init__(self, pb_utils, model: str):
        self.model = model
        kind = getattr(pb_utils.MetricFamily, "HISTOGRAM", None)
        # The families must outlive their metrics: keep both.
        self.families = {} if kind is None else {
            name: (pb_utils.MetricFamily(name=name, description=text, kind=kind), buckets)
            for name, (text, buckets) in HISTOGRAMS.items()
        }
        if kind is None:
            _log(pb_utils, "warn", "this python backend has no histogram metrics (24.08+): the dispatch publishes its "
                                   "counters only")
        self.metrics: dict[tuple, object] = {}

    def _metric(self, name: str, level: str):
        metric = self.metrics.get((name, level))
        if metric is None:
            family, buckets = self.families[name]
            metric = self.metrics[name, level] = family.Metric(labels={"model": self.model, "class": level},
                                                               buckets=list(buckets))
        return metric

    def observe(self, times: RequestTimes, level: str, tokens: int) -> None:
        if not self.families:
            return
        for batch in times.sub_batches:
            start, end = batch.executed
            self._metric("mxbai_dispatch_queue_wait_seconds", level).observe(start - times.ready)
            self._metric("mxbai_dispatch_execution_seconds", level).observe(end - start)
        self._metric("mxbai_dispatch_request_duration_seconds", level).observe(times.tokenization + times.finished - times.ready)
        self._metric("mxbai_dispatch_request_tokens", level).observe(tokens)


class DispatchSpans:
    """OpenTelemetry spans of the dispatch, children of the tokenizer's Triton span: `tokenize`, `dispatch`, and one
    `sub_batch` per scorer call under `dispatch`.

    A BLS request's Triton span is a child of the tokenizer's span, never of a span of ours (python_backend's
    InferenceTrace takes no parent: pb_stub.cc r24.10 1704-1712), so the scorer's spans are siblings of these;
    each `sub_batch` span names the Triton request id of its scorer call (`triton.request_id` on Triton's span).
    Spans are made after the request is answered, from the times recorded: nothing is spent while it runs.
    """

    def __init__(self, model: str):
        self.provider = tracer_provider(service_name(DISPATCH_SUFFIX))
        self.tracer = None if self.provider is None else self.provider.get_tracer(f"mxbai_triton.dispatch.{model}")

    def close(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()

    def context(self, request):
        """The tokenizer span's context of a traced request (python backend 24.07+), else None."""
        if self.tracer is None or not hasattr(request, "trace"):
            return None
        text = request.trace().get_context()
        if not text:  # tracing off, or this request not sampled
            return None
        from opentelemetry.propagate import extract

        return extract(json.loads(text))

    def record(self, context, times: RequestTimes, level: str, outcome: str) -> None:
        if context is None:
            return
        offset = time.time_ns() - time.monotonic_ns()  # Triton stamps spans on the system clock

        def ns(seconds: float) -> int:
            return int(seconds * 1e9) + offset

        rid = {"mxbai.request_id": times.request_id} if times.request_id else {}
        tokenize = self.tracer.start_span("tokenize", context, start_time=ns(times.ready - times.tokenization), attributes=rid)
        tokenize.end(end_time=ns(times.ready))
        from opentelemetry.trace import set_span_in_context

        dispatch = self.tracer.start_span("dispatch", context, start_time=ns(times.ready), attributes={
            **rid, "mxbai.class": level, "mxbai.sub_batches": len(times.sub_batches), "mxbai.outcome": outcome})
        parent = set_span_in_context(dispatch)
        for batch in times.sub_batches:
            start, end = batch.executed
            span = self.tracer.start_span("sub_batch", parent, start_time=ns(batch.sent), attributes={
                "triton.request_id": times.sub_batch_id(batch.index), "mxbai.rows": batch.rows,
                "mxbai.padded_length": batch.padded_length, "mxbai.real_tokens": batch.real_tokens,
                "mxbai.queue_wait_s": start - times.ready, "mxbai.execution_s": end - start,
                "mxbai.execution_reported": batch.execution is not None})
            span.end(end_time=ns(batch.answered))
        dispatch.end(end_time=ns(times.finished))


def log_request(pb_utils, times: RequestTimes, timings: Timings, *, level: str, documents: int, tokens: int,
                outcome: str) -> None:
    """One line per request in Triton's verbose log (--log-verbose=1; `serve -v`), as JSON after the request id."""
    fields = {"class": level, "documents": documents, "tokens": tokens, "sub_batches": len(times.sub_batches),
              "outcome": outcome, **{f"{name}_ms": round(getattr(timings, name) * 1e3, 3)
                                     for name in ("tokenization", "queue", "inference", "dispatch")}}
    _log(pb_utils, "verbose", f"[request id: {times.request_id}] dispatched {json.dumps(fields)}")


def _log(pb_utils, level: str, message: str) -> None:
    logger = getattr(pb_utils, "Logger", None)
    if logger is not None:
        getattr(logger, f"log_{level}")(message)
