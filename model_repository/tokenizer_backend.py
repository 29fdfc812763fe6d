"""Triton python model: (query, documents, instruction) -> scores and token counts, via length-sorted sub-batches
sent to the scorer within each request's share of its queue, stopping when the request is cancelled or times out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mxbai_triton.core.deadline import Clock, Deadline
from mxbai_triton.core.dispatch import COUNTERS, LEVEL_NAMES, DispatchLimits, SchedulingPolicy, plan_sub_batches, requested_level
from mxbai_triton.core.drain import IN_FLIGHT_GAUGE, REFUSAL, drain_file, draining
from mxbai_triton.core.model import TOKEN_COUNTS, ModelSpec
from mxbai_triton.core.preprocess import RerankPreprocessor
from mxbai_triton.core.serving import ServingLimits
from mxbai_triton.core.telemetry import TIMINGS, Timings, with_request_id
from mxbai_triton.core.truncation import truncation_refusal
from mxbai_triton.core.wire import PRIORITY_INTERACTIVE

from .dispatch_telemetry import LOG_REQUESTS_ENV, DispatchHistograms, DispatchSpans, RequestTimes, log_request


class RequestError(ValueError):
    """A request-level problem; becomes that request's error response, the model keeps serving."""


def decode_text(tensor, name: str, *, max_items: int | None = None, single: bool = False) -> list[str]:
    """BYTES tensor (numpy object array) -> list of str, strict UTF-8, with errors naming the input."""
    if tensor is None:
        raise RequestError(f"missing input '{name}'")
    values = tensor.reshape(-1)
    if single and values.size != 1:
        raise RequestError(f"'{name}' must hold exactly one string, got {values.size}")
    if values.size == 0:
        raise RequestError(f"'{name}' is empty: send at least one document")
    if max_items is not None and values.size > max_items:
        raise RequestError(
            f"'{name}' has {values.size} items, more than the per-request limit of {max_items}; "
            "split the list (RerankClient does this for you)"
        )
    out = []
    for i, value in enumerate(values):
        if isinstance(value, str):
            out.append(value)
            continue
        try:
            out.append(bytes(value).decode("utf-8"))
        except UnicodeDecodeError as error:
            where = name if single else f"{name}[{i}]"
            raise RequestError(f"'{where}' is not valid UTF-8 ({error.reason} at byte {error.start})") from None
    return out


@dataclass(frozen=True)
class SubBatch:
    """Rows of one request that go to the scorer together, padded to their own longest row."""

    rows: np.ndarray  # positions in the request's document list
    input_ids: np.ndarray
    attention_mask: np.ndarray

    @property
    def real_tokens(self) -> int:
        return int(self.attention_mask.sum())

    @property
    def token_counts(self) -> np.ndarray:
        """Prompt tokens of each row (what the reference scores after truncation)."""
        return self.attention_mask.sum(axis=1)


@dataclass(frozen=True)
class RequestPlan:
    """One request's class (core.wire priority level) and its sub-batches, in sending order."""

    level: int
    batches: list[SubBatch]


class TokenizerCore:
    """The framework-free part: requests of text in, length-sorted padded sub-batches out (tested without Triton)."""

    def __init__(self, model_dir: str | Path):
        self.spec = ModelSpec.load(model_dir)
        self.serving = ServingLimits.load(model_dir)
        self.preprocessor = RerankPreprocessor.from_dir(model_dir, self.spec,
                                                        special_tokens_in_text=self.serving.special_tokens_in_text)
        self.policy = SchedulingPolicy.of(self.serving)
        self.limits = {level: DispatchLimits.of(self.spec, self.serving, level) for level in LEVEL_NAMES}

    def parse(self, query, documents, instruction) -> tuple[str, list[str], str | None]:
        query_text = decode_text(query, "query", single=True)[0]
        docs = decode_text(documents, "documents", max_items=self.serving.max_documents_per_request)
        inst = None if instruction is None else decode_text(instruction, "instruction", single=True)[0]
        return query_text, docs, inst

    def plan(self, parsed: list[tuple[str, list[str], str | None]], requested: list[int] | None = None) -> list[RequestPlan]:
        """Each request's class and sub-batches, from one tokenizer call for all requests' documents.

        A request's class follows from its interactive plan's padded tokens and its caller's level
        (`requested`, 0 each by default); bulk requests are planned again within the bulk limits.
        """
        plans = []
        interactive = self.limits[PRIORITY_INTERACTIVE]
        for encoded, wanted in zip(self.preprocessor.encode_arrays(parsed), requested or [0] * len(parsed)):
            lengths = encoded.lengths
            cuts = plan_sub_batches(lengths, interactive)
            level = self.policy.level(interactive.padded_tokens(lengths, cuts), wanted)
            limits = self.limits[level]
            if limits != interactive:
                cuts = plan_sub_batches(lengths, limits)
            batches = []
            for rows in cuts:
                width = int(limits.padded(lengths[rows[-1:]])[0])  # rows ascend: the last is the longest
                ids, mask = encoded.padded(rows, width, pad_id=self.spec.pad_token_id, side=self.spec.padding_side)
                batches.append(SubBatch(rows, ids, mask))
            plans.append(RequestPlan(level, batches))
        return plans


# Why sub-batches of a request were never sent: its client went away, its timeout passed, an earlier one failed.
SKIP_REASONS = ("cancelled", "deadline", "failed")


class DispatchCounters:
    """The dispatch's Prometheus counters on Triton's metrics port (names and meanings: dispatch.COUNTERS)."""

    def __init__(self, pb_utils, model: str):
        self.model = model
        # The families must outlive their metrics: keep both.
        self.families = {
            name: pb_utils.MetricFamily(name=name, description=text, kind=pb_utils.MetricFamily.COUNTER)
            for name, text in COUNTERS.items()
        }
        self.metrics: dict[tuple, object] = {}
        # Every reason's series from the start, at 0: a dashboard's rate() sees the first skip, not a series appearing.
        for reason in SKIP_REASONS:
            self._metric("skipped_sub_batches", reason=reason)

    def _metric(self, key: str, **labels):
        index = (key, *labels.items())  # a few per sub-batch: no string building on the way
        metric = self.metrics.get(index)
        if metric is None:
            metric = self.metrics[index] = self.families[f"mxbai_dispatch_{key}"].Metric(labels={"model": self.model, **labels})
        return metric

    def sent(self, batch: SubBatch, level: str, seconds: float) -> None:
        self._metric("documents", **{"class": level}).increment(len(batch.rows))
        self._metric("sub_batches", **{"class": level}).increment(1)
        self._metric("real_tokens", **{"class": level}).increment(batch.real_tokens)
        self._metric("padded_tokens", **{"class": level}).increment(batch.input_ids.size)
        self._metric("sub_batch_seconds", **{"class": level}).increment(seconds)

    def finished(self, level: str, seconds: float) -> None:
        self._metric("requests", **{"class": level}).increment(1)
        self._metric("request_seconds", **{"class": level}).increment(seconds)

    def skipped(self, reason: str, count: int) -> None:
        if count:
            self._metric("skipped_sub_batches", reason=reason).increment(count)


def request_deadline(timeout_us: int, clock: Clock = time.monotonic) -> Deadline:
    """When a request stops being worth work: its Triton `timeout` after its dispatch began (none when 0)."""
    return Deadline.after(timeout_us / 1e6, clock) if timeout_us else Deadline.none(clock)


class TritonPythonModel:
    """Tokenizer step of the ensemble: tokenizes, then dispatches sub-batches to the scorer (BLS)."""

    clock: Clock = staticmethod(time.monotonic)  # what the requests' deadlines read; tests drive their own

    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.scorer = params["scorer_model"]
        self.core = TokenizerCore(Path(args["model_repository"]) / args["model_version"])
        spec = self.core.spec
        self.policy = self.core.policy
        self.in_names = (spec.input_ids.name, spec.attention_mask.name)
        self.in_dtype = np.dtype(self.core.serving.scorer_input_dtype)
        self.scores_name = spec.scores.name
        self.counters = DispatchCounters(pb_utils, config["name"])
        self.histograms = DispatchHistograms(pb_utils, config["name"])
        self.spans = DispatchSpans(config["name"])
        self.log_requests = bool(os.environ.get(LOG_REQUESTS_ENV))
        preprocessor = self.core.preprocessor
        self.max_prompt_tokens = preprocessor.max_length + preprocessor.predefined_length
        self.drain = DrainGate(pb_utils, config["name"])

    def finalize(self):
        self.spans.close()

    async def execute(self, requests):
        with self.drain.entered(len(requests)) as refused:
            if refused:  # the server is draining: nothing of these requests was started
                return [_failed(self.pb, _error(self.pb, REFUSAL, "UNAVAILABLE")) for _ in requests]
            return await self._execute(requests)

    async def _execute(self, requests):
        pb = self.pb
        started = time.monotonic()
        parsed, levels, errors = [], [], {}
        for i, request in enumerate(requests):
            try:
                parsed.append(self.core.parse(*(
                    _numpy_or_none(pb.get_input_tensor_by_name(request, n)) for n in ("query", "documents", "instruction")
                )))
                levels.append(_requested_level(request))
            except RequestError as error:
                errors[i] = _error(pb, with_request_id(_request_id(request), str(error)), "INVALID_ARG")
        plans = iter(self.core.plan(parsed, levels))
        tokenization = time.monotonic() - started  # one tokenizer call for every request of this execution
        dispatches = [None if i in errors else self._dispatch(request, next(plans), tokenization)
                      for i, request in enumerate(requests)]
        # Concurrently: sub-batches of several requests merge in the scorer's batcher.
        answers = iter(await asyncio.gather(*(d for d in dispatches if d is not None)))
        return [_failed(pb, errors[i]) if d is None else next(answers) for i, d in enumerate(dispatches)]

    async def _dispatch(self, request, request_plan: RequestPlan, tokenization: float):
        """Send the plan to the scorer within the request's share of its queue; the response (scores or the first error)."""
        times = RequestTimes(_request_id(request), tokenization)
        refusal = _refusal(request, request_plan.batches, self.max_prompt_tokens)
        if refusal is not None:  # refused before any scoring
            return _failed(self.pb, _error(self.pb, with_request_id(times.request_id, refusal), "INVALID_ARG"))
        started = times.ready
        deadline = request_deadline(request.timeout(), self.clock)
        plan, label = request_plan.batches, LEVEL_NAMES[request_plan.level]
        window = self.policy.in_flight(request_plan.level, len(plan))
        answers: list = [None] * len(plan)
        in_flight: dict[asyncio.Future, int] = {}
        stop: tuple[str, str] | None = None
        sent = 0
        while sent < len(plan) or in_flight:
            while sent < len(plan) and len(in_flight) < window and stop is None:
                # Checked before every send of a window-limited request: work nobody waits for stops here.
                stop = self._stop_reason(request, deadline, check_cancel=window < len(plan) or sent == 0)
                if stop is None:
                    in_flight[asyncio.ensure_future(self._send(request, times, sent, plan[sent], deadline, label))] = sent
                    sent += 1
            if not in_flight:
                break
            done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                index = in_flight.pop(future)
                answers[index] = future.result()
                if answers[index].has_error() and stop is None:
                    # A sub-batch that failed once the request's deadline had passed: answered as timed out.
                    stop = self._stop_reason(request, deadline, check_cancel=False) or ("failed", "")
        self.counters.finished(label, time.monotonic() - started)
        timings = times.finish()
        if stop is not None and stop[0] != "failed":
            self.counters.skipped(stop[0], len(plan) - sent)
            self._published(request, times, timings, label, plan, stop[0])
            message = f"{stop[1]}: {len(plan) - sent} of {len(plan)} sub-batches were not sent to the scorer"
            return _failed(self.pb, _error(self.pb, with_request_id(times.request_id, message),
                                           "CANCELLED" if stop[0] == "cancelled" else "UNAVAILABLE"))
        self.counters.skipped("failed", len(plan) - sent)
        outputs, error = self._gather(plan, answers, times.request_id)
        self._published(request, times, timings, label, plan, "failed" if error else "ok")
        if error:
            return _failed(self.pb, error)
        return self.pb.InferenceResponse(output_tensors=[*outputs, self.pb.Tensor(TIMINGS.name, timings.to_array())])

    def _published(self, request, times: RequestTimes, timings: Timings, level: str, plan: list[SubBatch], outcome: str):
        """The request's figures once: histograms, spans (a traced request), the log line (`serve -v`)."""
        tokens = sum(b.real_tokens for b in plan)
        self.histograms.observe(times, level, tokens)
        self.spans.record(self.spans.context(request), times, level, outcome)
        if self.log_requests:
            log_request(self.pb, times, timings, level=level, documents=sum(len(b.rows) for b in plan), tokens=tokens,
                        outcome=outcome)

    def _stop_reason(self, request, deadline: Deadline, *, check_cancel: bool) -> tuple[str, str] | None:
        if deadline.passed():
            return "deadline", "the request's timeout passed"
        if check_cancel and request.is_cancelled():
            return "cancelled", "the request was cancelled by its client"
        return None

    async def _send(self, request, times: RequestTimes, index: int, batch: SubBatch, deadline: Deadline, label: str):
        tensors = [self.pb.Tensor(n, a.astype(self.in_dtype, copy=False))
                   for n, a in zip(self.in_names, (batch.input_ids, batch.attention_mask))]
        # The sub-batch carries its request's remaining time (0: none). Our scorer's queue has no policy
        # to apply it (configs.scorer_config says why: Triton honours an override only below a non-zero
        # default timeout), so the deadline is checked before each send; a scorer configured with a queue
        # policy rejects it there once expired. No requested outputs: every output the scorer has, its
        # execution times where it reports them (core/telemetry.EXECUTION).
        # A BLS request carries neither the request's id nor its trace unless given (python_backend
        # r24.10 request_executor.cc 355-356, 376-382; server docs/user_guide/trace.md "Tracing for BLS
        # models"); an untraced request's trace is empty and costs nothing.
        sub = self.pb.InferenceRequest(model_name=self.scorer, inputs=tensors, requested_output_names=[],
                                       timeout=deadline.remaining_us(), request_id=times.sub_batch_id(index),
                                       **({"trace": request.trace()} if hasattr(request, "trace") else {}))
        started = time.monotonic()
        answer = await sub.async_exec()
        times.answered(index, batch, started, answer, self.pb)
        self.counters.sent(batch, label, time.monotonic() - started)
        return answer

    def _gather(self, plan: list[SubBatch], answers, request_id: str) -> tuple[list, object]:
        """Scores and token counts in input order, or the first scorer error (never a default score)."""
        rows = sum(len(b.rows) for b in plan)
        scores = np.empty((rows, 1), dtype=np.float32)
        counts = np.empty((rows, 1), dtype=np.dtype(TOKEN_COUNTS.dtype))
        for batch, answer in zip(plan, answers):
            if answer.has_error():
                cause = answer.error()
                code = cause.code() if hasattr(cause, "code") else None
                return [], _error(self.pb, with_request_id(request_id, f"scorer '{self.scorer}' failed: {cause.message()}"), code)
            scores[batch.rows] = self.pb.get_output_tensor_by_name(answer, self.scores_name).as_numpy().reshape(-1, 1)
            counts[batch.rows, 0] = batch.token_counts
        return [self.pb.Tensor(self.scores_name, scores), self.pb.Tensor(TOKEN_COUNTS.name, counts)], None


def _request_id(request) -> str:
    """The request's Triton id (a KServe `id`, the gateway's x-request-id); "" when its client gave none."""
    return request.request_id() if hasattr(request, "request_id") else ""


def _requested_level(request) -> int:
    try:
        return requested_level(json.loads(request.parameters() or "{}"))
    except ValueError as error:
        raise RequestError(str(error)) from None


class DrainGate:
    """The drain flag (core/drain.py) and the gauge of requests in flight on Triton's metrics port."""

    def __init__(self, pb_utils, model: str):
        self.path = drain_file()
        # The family must outlive its metric: keep both.
        self.family = pb_utils.MetricFamily(name=IN_FLIGHT_GAUGE, description="requests the dispatch has started and "
                                            "not answered", kind=pb_utils.MetricFamily.GAUGE)
        self.gauge = self.family.Metric(labels={"model": model})

    @contextlib.contextmanager
    def entered(self, requests: int):
        # Counted before the flag is read: a drain that sees no request in flight after setting the flag
        # cannot miss one that read the flag before it was set.
        self.gauge.increment(requests)
        try:
            yield draining(self.path)
        finally:
            self.gauge.increment(-requests)


def _refusal(request, plan: list[SubBatch], max_prompt_tokens: int) -> str | None:
    """Why the request is refused once tokenized (`truncate: NONE` and a cut document), else None."""
    try:
        return truncation_refusal(json.loads(request.parameters() or "{}"), [(b.rows, b.token_counts) for b in plan],
                                  max_prompt_tokens)
    except ValueError as error:
        return str(error)


def _failed(pb, error):
    return pb.InferenceResponse(output_tensors=[], error=error)


def _error(pb, message: str, code):
    """A TritonError with `code` (a name like "INVALID_ARG" → HTTP 400, or a code) where the backend supports codes."""
    if isinstance(code, str):
        code = getattr(pb.TritonError, code, None)
    return pb.TritonError(message) if code is None else pb.TritonError(message, code)


def _numpy_or_none(tensor):
    return None if tensor is None else tensor.as_numpy()
