"""Triton python model: (query, documents, instruction) -> scores and token counts, via length-sorted sub-batches sent to the scorer."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mxbai_triton.export.preprocess import RerankPreprocessor
from mxbai_triton.export.spec import TOKEN_COUNTS, ModelSpec

from .dispatch import DispatchLimits, plan_sub_batches


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


class TokenizerCore:
    """The framework-free part: requests of text in, length-sorted padded sub-batches out (tested without Triton)."""

    def __init__(self, model_dir: str | Path):
        self.spec = ModelSpec.load(model_dir)
        self.preprocessor = RerankPreprocessor.from_dir(model_dir, self.spec)
        self.limits = DispatchLimits.from_spec(self.spec)

    def parse(self, query, documents, instruction) -> tuple[str, list[str], str | None]:
        query_text = decode_text(query, "query", single=True)[0]
        docs = decode_text(documents, "documents", max_items=self.spec.max_documents_per_request)
        inst = None if instruction is None else decode_text(instruction, "instruction", single=True)[0]
        return query_text, docs, inst

    def plan(self, parsed: list[tuple[str, list[str], str | None]]) -> list[list[SubBatch]]:
        """Each request's sub-batches, from one tokenizer call for all requests' documents."""
        plans = []
        for encoded in self.preprocessor.encode_arrays(parsed):
            lengths = encoded.lengths
            batches = []
            for rows in plan_sub_batches(lengths, self.limits):
                width = int(self.limits.padded(lengths[rows[-1:]])[0])  # rows ascend: the last is the longest
                ids, mask = encoded.padded(rows, width, pad_id=self.spec.pad_token_id, side=self.spec.padding_side)
                batches.append(SubBatch(rows, ids, mask))
            plans.append(batches)
        return plans


class DispatchCounters:
    """Prometheus counters on Triton's metrics endpoint: what the scorer was sent, real vs padded tokens."""

    NAMES = {
        "documents": "documents dispatched to the scorer",
        "sub_batches": "scorer requests (sub-batches) sent",
        "real_tokens": "prompt tokens of the dispatched documents",
        "padded_tokens": "tokens the scorer computes: rows x padded length",
    }

    def __init__(self, pb_utils, model: str):
        # The families must outlive their metrics: keep both.
        self.families = {
            key: pb_utils.MetricFamily(name=f"mxbai_dispatch_{key}", description=text, kind=pb_utils.MetricFamily.COUNTER)
            for key, text in self.NAMES.items()
        }
        self.metrics = {key: family.Metric(labels={"model": model}) for key, family in self.families.items()}

    def add(self, batch: SubBatch) -> None:
        self.metrics["documents"].increment(len(batch.rows))
        self.metrics["sub_batches"].increment(1)
        self.metrics["real_tokens"].increment(batch.real_tokens)
        self.metrics["padded_tokens"].increment(batch.input_ids.size)


class TritonPythonModel:
    """Tokenizer step of the ensemble: tokenizes, then dispatches sub-batches to the scorer (BLS)."""

    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.scorer = params["scorer_model"]
        self.core = TokenizerCore(Path(args["model_repository"]) / args["model_version"])
        spec = self.core.spec
        self.in_names = (spec.input_ids.name, spec.attention_mask.name)
        self.in_dtypes = (np.dtype(spec.input_ids.dtype), np.dtype(spec.attention_mask.dtype))
        self.scores_name = spec.scores.name
        self.counters = DispatchCounters(pb_utils, config["name"])

    def _sub_request(self, batch: SubBatch):
        tensors = [self.pb.Tensor(n, a.astype(d, copy=False))
                   for n, a, d in zip(self.in_names, (batch.input_ids, batch.attention_mask), self.in_dtypes)]
        return self.pb.InferenceRequest(model_name=self.scorer, inputs=tensors, requested_output_names=[self.scores_name])

    async def execute(self, requests):
        pb = self.pb
        parsed, errors = [], {}
        for i, request in enumerate(requests):
            try:
                parsed.append(self.core.parse(*(
                    _numpy_or_none(pb.get_input_tensor_by_name(request, n)) for n in ("query", "documents", "instruction")
                )))
            except RequestError as error:
                errors[i] = _error(pb, str(error), "INVALID_ARG")
        plans = self.core.plan(parsed)
        # Every sub-batch of every request in flight at once: equal shapes merge in the scorer's batcher.
        flat = [batch for plan in plans for batch in plan]
        answers = iter(await asyncio.gather(*(self._sub_request(b).async_exec() for b in flat)))
        for batch in flat:
            self.counters.add(batch)
        responses, plans = [], iter(plans)
        for i in range(len(requests)):
            if i in errors:
                responses.append(pb.InferenceResponse(output_tensors=[], error=errors[i]))
                continue
            plan = next(plans)
            outputs, error = self._gather(plan, [next(answers) for _ in plan])
            responses.append(pb.InferenceResponse(output_tensors=[] if error else outputs, error=error))
        return responses

    def _gather(self, plan: list[SubBatch], answers) -> tuple[list, object]:
        """Scores and token counts in input order, or the first scorer error (never a default score)."""
        rows = sum(len(b.rows) for b in plan)
        scores = np.empty((rows, 1), dtype=np.float32)
        counts = np.empty((rows, 1), dtype=np.dtype(TOKEN_COUNTS.dtype))
        for batch, answer in zip(plan, answers):
            if answer.has_error():
                cause = answer.error()
                code = cause.code() if hasattr(cause, "code") else None
                return [], _error(self.pb, f"scorer '{self.scorer}' failed: {cause.message()}", code)
            scores[batch.rows] = self.pb.get_output_tensor_by_name(answer, self.scores_name).as_numpy().reshape(-1, 1)
            counts[batch.rows, 0] = batch.token_counts
        return [self.pb.Tensor(self.scores_name, scores), self.pb.Tensor(TOKEN_COUNTS.name, counts)], None


def _error(pb, message: str, code):
    """A TritonError with `code` (a name like "INVALID_ARG" → HTTP 400, or a code) where the backend supports codes."""
    if isinstance(code, str):
        code = getattr(pb.TritonError, code, None)
    return pb.TritonError(message) if code is None else pb.TritonError(message, code)


def _numpy_or_none(tensor):
    return None if tensor is None else tensor.as_numpy()
