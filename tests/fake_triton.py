"""A stand-in for `triton_python_backend_utils` at the Triton edge: runs a python model's real code in-process,
with a scripted scorer behind its BLS calls (what each sub-batch answers, and when)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np


class TritonError:
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS, CANCELLED = range(8)

    def __init__(self, message: str, code: int = 0):
        self._message, self._code = message, code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class Tensor:
    def __init__(self, name: str, array):
        self._name, self._array = name, np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self):
        return self._array


class InferenceResponse:
    def __init__(self, output_tensors=(), error: TritonError | None = None):
        self.output_tensors, self._error = list(output_tensors), error

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def output(self, name: str):
        return next((t for t in self.output_tensors if t.name() == name), None)


class Request:
    """A client request as the python model sees it."""

    def __init__(self, query: str, documents: list[str], *, parameters: dict | None = None, timeout_us: int = 0,
                 cancelled: Callable[[], bool] = lambda: False, request_id: str = ""):
        self.inputs = {"query": Tensor("query", np.array([query.encode()], dtype=object)),
                       "documents": Tensor("documents", np.array([d.encode() for d in documents], dtype=object))}
        self._parameters, self._timeout, self._cancelled = parameters or {}, timeout_us, cancelled
        self._request_id = request_id

    def request_id(self) -> str:
        return self._request_id

    def trace(self) -> "InferenceTrace":
        return InferenceTrace()

    def parameters(self) -> str:
        return json.dumps(self._parameters)

    def timeout(self) -> int:
        return self._timeout

    def is_cancelled(self) -> bool:
        return self._cancelled()


class InferenceTrace:
    """An untraced request's trace (tracing off): no context."""

    def get_context(self) -> None:
        return None


class DrivenClock:
    """Time that moves only when a test moves it (seconds)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Scorer:
    """The scorer behind BLS: answers each sub-batch after `delay` seconds (or with `fail(batch)`'s error),
    scoring a row as the sum of its real token ids; records what it was sent and the most in flight at once.
    `reports_execution`: it answers its execution's start and end too, as the python scorer does."""

    def __init__(self, delay: float = 0.0, fail: Callable[[int], str | None] = lambda index: None,
                 reports_execution: bool = False, clock: "DrivenClock | None" = None):
        self.delay, self.fail, self.reports_execution, self.clock = delay, fail, reports_execution, clock
        self.sent: list[dict] = []
        self.in_flight = self.most_in_flight = 0

    @staticmethod
    def expected(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return (input_ids * attention_mask).sum(axis=1).astype(np.float32)

    async def answer(self, request: "InferenceRequest") -> InferenceResponse:
        index = len(self.sent)
        self.sent.append({"rows": len(request.inputs[0].as_numpy()), "timeout": request.timeout,
                          "request_id": request.request_id})
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        started = time.monotonic_ns()
        try:
            if self.clock is None:
                await asyncio.sleep(self.delay)
            else:  # driven time: the execution takes exactly `delay` on the dispatch's clock
                await asyncio.sleep(0)
                self.clock.now += self.delay
        finally:
            self.in_flight -= 1
        message = self.fail(index)
        if message:
            return InferenceResponse(error=TritonError(message, TritonError.INTERNAL))
        ids, mask = (t.as_numpy() for t in request.inputs)
        outputs = [Tensor("scores", self.expected(ids, mask)[:, None])]
        if self.reports_execution:
            outputs.append(Tensor("execution_ns", np.tile([started, time.monotonic_ns()], (len(ids), 1))))
        return InferenceResponse(outputs)


class InferenceRequest:
    scorer: Scorer  # set by install()

    def __init__(self, model_name: str, inputs, requested_output_names, timeout: int = 0, request_id: str = "", **_):
        self.model_name, self.inputs, self.timeout, self.request_id = model_name, inputs, timeout, request_id

    async def async_exec(self) -> InferenceResponse:
        return await self.scorer.answer(self)


class _Metric:
    def __init__(self, store: dict, key: tuple):
        self.store, self.key = store, key

    def increment(self, value: float) -> None:
        self.store[self.key] = self.store.get(self.key, 0) + value

    def observe(self, value: float) -> None:
        self.store.setdefault(self.key, []).append(value)


class MetricFamily:
    COUNTER, GAUGE, HISTOGRAM = 0, 1, 2
    values: dict = {}

    def __init__(self, name: str, description: str, kind: int):
        self.name, self.kind = name, kind

    def Metric(self, labels: dict, buckets=None) -> _Metric:  # noqa: N802 - Triton's spelling
        if (buckets is None) == (self.kind == MetricFamily.HISTOGRAM):  # as Triton refuses (src/metric_family.cc)
            raise ValueError("buckets are required for histograms and refused otherwise")
        return _Metric(MetricFamily.values, (self.name, tuple(sorted(labels.items()))))


class Logger:
    lines: list[tuple[str, str]] = []

    @classmethod
    def log_verbose(cls, message: str) -> None:
        cls.lines.append(("verbose", message))

    @classmethod
    def log_warn(cls, message: str) -> None:
        cls.lines.append(("warn", message))


def install(scorer: Scorer, monkeypatch) -> types.ModuleType:
    """Put a fake `triton_python_backend_utils` (with `scorer` behind BLS) where python models import it, for one test."""
    module = types.ModuleType("triton_python_backend_utils")
    InferenceRequest.scorer = scorer
    MetricFamily.values, Logger.lines = {}, []
    module.TritonError, module.Tensor, module.InferenceResponse = TritonError, Tensor, InferenceResponse
    module.InferenceRequest, module.MetricFamily, module.Logger = InferenceRequest, MetricFamily, Logger
    module.get_input_tensor_by_name = lambda request, name: request.inputs.get(name)
    module.get_output_tensor_by_name = lambda response, name: response.output(name)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", module)
    return module


def observations(name: str, **labels) -> list[float]:
    """A histogram's observed values, over the labels not given."""
    return [value for (n, ls), values in MetricFamily.values.items()
            if n == name and all(item in ls for item in labels.items()) for value in values]


def counter(name: str, **labels) -> float:
    """A counter's value summed over the labels not given."""
    return sum(v for (n, ls), v in MetricFamily.values.items() if n == name and all((k, x) in ls for k, x in labels.items()))


def model_args(version_dir: Path, config: dict) -> dict:
    """`initialize(args)` as Triton passes it for a model whose version folder is `version_dir`."""
    return {"model_config": json.dumps(config), "model_repository": str(version_dir.parent),
            "model_version": version_dir.name}
