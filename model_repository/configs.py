"""Triton ModelConfig protobufs for the ensemble, tokenizer and scorer, built from the spec."""

from __future__ import annotations

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as mc

from mxbai_triton.core.engine import EngineProfiles
from mxbai_triton.core.memory import UNFUSED_ATTENTION_DTYPES
from mxbai_triton.core.model import ONNX_FILENAME, TOKEN_COUNTS, ModelSpec, TensorSpec
from mxbai_triton.core.runtime import CpuScoring
from mxbai_triton.core.serving import ServingLimits
from mxbai_triton.core.telemetry import EXECUTION, TIMINGS
from mxbai_triton.core.wire import PRIORITY_BULK, PRIORITY_INTERACTIVE

from .openvino_options import backend_parameters as openvino_parameters
from .ort_cuda_options import SCORER_OPTIONS as CUDA_SCORER_OPTIONS

TARGETS = ("portable", "onnx", "trt", "openvino")
# Targets whose scorer runs on the CPU at a precision of its own choosing (CpuScoring); the GPU
# targets compute in the export's (or engine's) dtype.
CPU_TARGETS = ("portable", "openvino")
TRITON_DTYPES = {"int64": "TYPE_INT64", "int32": "TYPE_INT32", "float32": "TYPE_FP32", "object": "TYPE_STRING"}
ENSEMBLE_INPUTS = ("query", "documents", "instruction")


def model_names(name: str) -> dict[str, str]:
    """The three model names of one deployment."""
    return {"ensemble": name, "tokenizer": f"{name}_tokenizer", "scorer": f"{name}_scorer"}


def _tensor(name: str, dtype: str, dims, **extra) -> dict:
    return {"name": name, "data_type": TRITON_DTYPES[dtype], "dims": list(dims), **extra}


def _spec_tensor(t: TensorSpec, **extra) -> dict:
    return _tensor(t.name, t.dtype, t.dims, **extra)


def _text_inputs() -> list[dict]:
    return [
        _tensor("query", "object", [1]),
        _tensor("documents", "object", [-1]),
        _tensor("instruction", "object", [1], optional=True),
    ]


def _text_outputs(spec: ModelSpec) -> list[dict]:
    # `timings` is additive to the public contract (query, documents, instruction -> scores, token_counts):
    # clients that name their outputs are unaffected (docs/observability.md).
    return [_tensor(spec.scores.name, spec.scores.dtype, [-1, 1]), _tensor(TOKEN_COUNTS.name, TOKEN_COUNTS.dtype, [-1, 1]),
            _spec_tensor(TIMINGS)]


def _build(raw: dict) -> mc.ModelConfig:
    # ParseDict rejects unknown fields and wrong enum names: the protobuf schema checks every config.
    return json_format.ParseDict(raw, mc.ModelConfig())


def _text_model(name: str, spec: ModelSpec, **fields) -> mc.ModelConfig:
    """A non-batching model with the public text signature (query, documents, instruction -> scores, token counts)."""
    return _build({"name": name, "max_batch_size": 0, "input": _text_inputs(), "output": _text_outputs(spec), **fields})


def ensemble_config(spec: ModelSpec, limits: ServingLimits, name: str, *, precision: str | None = None) -> mc.ModelConfig:
    """The public model; `precision` is what its scorer computes in (default: the export's dtype)."""
    names = model_names(name)
    return _text_model(
        names["ensemble"], spec,
        platform="ensemble",
        # Read by clients through the model-config API: no out-of-band copy of the spec needed.
        parameters={
            "max_documents_per_request": {"string_value": str(limits.max_documents_per_request)},
            "estimated_max": {"string_value": repr(float(spec.estimated_max))},
            # The ensemble's one step. Triton never cancels a step already running when its ensemble
            # request is cancelled (core ensemble_scheduler.cc: only steps scheduled afterwards), so
            # clients that cancel (RerankClient, the gateway) call this model directly: same contract.
            "dispatch_model": {"string_value": names["tokenizer"]},
            # The longest prompt the tokenizer step builds; a document's token count reaching it
            # means the document was cut (the gateway's `truncate: NONE` refuses such documents).
            "max_prompt_tokens": {"string_value": str(_max_prompt_tokens(spec))},
            # fp32, bf16 or fp16: what a client's scores were computed in (docs/cpu-precision.md).
            "scorer_precision": {"string_value": precision or spec.dtype},
        },
        # One step: the tokenizer sends the scorer length-sorted sub-batches itself (BLS), so the
        # token tensors never cross the ensemble; README "Length-aware dispatch" has the hop costs.
        ensemble_scheduling={"step": [{
            "model_name": names["tokenizer"], "model_version": -1,
            "input_map": {k: k for k in ENSEMBLE_INPUTS},
            "output_map": {t["name"]: t["name"] for t in _text_outputs(spec)},
        }]},
    )


def _max_prompt_tokens(spec: ModelSpec) -> int:
    """The reference's cap: query and document within max_length, the template (79 Qwen2.5 tokens) around them."""
    return min(spec.max_length + spec.predefined_length_hint, spec.model_max_length)


def tokenizer_config(spec: ModelSpec, limits: ServingLimits, name: str) -> mc.ModelConfig:
    # Non-batching: its batch axis would be requests, while the scorer's is documents. Each
    # execution encodes a request's documents in one call and awaits its sub-batches; instances
    # give concurrency across requests.
    names = model_names(name)
    return _text_model(
        names["tokenizer"], spec,
        backend="python",
        instance_group=[{"kind": "KIND_CPU", "count": limits.tokenizer_instances}],
        parameters={"scorer_model": {"string_value": names["scorer"]}},
        # Not batching (max_batch_size 0): the batcher only orders waiting requests, bulk-marked ones
        # (Triton priority 2) after the rest, and drops those past their timeout or cancelled. Each
        # level's queue is the admission bound of every caller: a request beyond it is refused at once.
        dynamic_batching={
            "priority_levels": PRIORITY_BULK, "default_priority_level": PRIORITY_INTERACTIVE,
            "default_queue_policy": _queue_policy(limits),
            "priority_queue_policy": {
                str(PRIORITY_INTERACTIVE): _queue_policy(limits, max_queue_size=limits.interactive_queue_size),
                str(PRIORITY_BULK): _queue_policy(limits, max_queue_size=limits.bulk_queue_size),
            },
        },
    )


def _queue_policy(limits: ServingLimits, **extra) -> dict:
    """Reject what waits longer than the queue timeout, or than the request's own `timeout` when shorter."""
    return {"default_timeout_microseconds": limits.queue_timeout_us, "allow_timeout_override": True,
            "timeout_action": "REJECT", **extra}


def scorer_config(spec: ModelSpec, limits: ServingLimits, name: str, target: str, *, instance_kind: str = "gpu",
                  profiles: EngineProfiles = EngineProfiles(), scoring: CpuScoring | None = None) -> mc.ModelConfig:
    """The scoring model for `target`: tensorrt_plan (with the engine's `profiles`), onnxruntime_onnx, Triton's
    openvino backend, or python + ONNX Runtime / OpenVINO (`scoring` for the two CPU targets)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    scoring = scoring or CpuScoring(runtime="openvino" if target == "openvino" else "onnxruntime")
    if target == "openvino":
        return _openvino_scorer(spec, limits, name, scoring)
    raw: dict = {
        "name": model_names(name)["scorer"],
        "max_batch_size": limits.max_batch_size,
        "input": [_tensor(t.name, limits.scorer_input_dtype, t.dims) for t in (spec.input_ids, spec.attention_mask)],
        "output": [_spec_tensor(spec.scores)],
        # No queue policy: with a timeout or a size limit Triton's batcher cannot prefetch, and then a
        # request queued while the scorer executes can wait up to 500 ms past the end of that execution
        # (core src/scheduler_utils.cc PriorityQueue(), src/dynamic_batch_scheduler.cc
        # WaitForPayloadSlotAvailable; measured in docs/scheduling.md). The scorer's queue is bounded by
        # the dispatch (a bulk request keeps one sub-batch in it), and deadlines are checked there.
        "dynamic_batching": {
            "preferred_batch_size": list(limits.preferred_batch_sizes),
            "max_queue_delay_microseconds": limits.queue_delay_us,
        },
    }
    if target == "trt":
        raw["platform"] = "tensorrt_plan"
        # Without `profile`, Triton uses optimization profile 0 only.
        raw["instance_group"] = [{
            "kind": "KIND_GPU", "count": 1, "profile": [str(i) for i in range(len(profiles.ranges(spec)))],
        }]
        # Each profile's context sized for its own profile (core/memory.py budgets weights + the
        # sum over profiles); the default STATIC sizes every context for the largest.
        raw["parameters"] = {"execution_context_allocation_strategy": {"string_value": "ON_PROFILE_CHANGE"}}
        raw["model_warmup"] = _warmup(spec, limits, profiles)
    elif target == "onnx":
        raw["platform"] = "onnxruntime_onnx"
        raw["instance_group"] = [{"kind": "KIND_GPU" if instance_kind == "gpu" else "KIND_CPU", "count": 1}]
        if instance_kind == "gpu":
            if spec.dtype in UNFUSED_ATTENTION_DTYPES:
                raise ValueError(
                    f"the onnx target on GPU needs an fp16 or bf16 export, and this one is {spec.dtype}: ONNX Runtime's "
                    f"CUDA provider runs {spec.dtype} attention unfused (onnxruntime#27880), [rows, heads, length, length] "
                    "scores per layer: 42 GiB for base-v2 at 48 x 4096, 171 GiB at 48 x 8272. Export with `mxbai-triton "
                    "export MODEL --dtype fp16` (or bf16), or serve this export on CPU (--instance-kind cpu, or --target portable)")
            # Passed to ONNX Runtime's CUDA provider verbatim: names and value forms it parses
            # (model_repository/ort_cuda_options.py; tests/ort_cuda_provider.py checks them against the provider's parser).
            raw["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [{
                "name": "cuda", "parameters": dict(CUDA_SCORER_OPTIONS),
            }]}}
            raw["model_warmup"] = _warmup(spec, limits, profiles)
    else:
        raw["backend"] = "python"
        raw["output"].append(_spec_tensor(EXECUTION))  # the dispatch's queue vs execution split
        # One instance: ONNX Runtime and OpenVINO already spread one execution over every core.
        raw["instance_group"] = [{"kind": "KIND_CPU", "count": 1}]
        # No ragged batching: the batcher merges only sub-batches of one padded length (which the
        # scorer runs as one batch). With it, a small request queued beside a bulk sub-batch of
        # another length shared its execution call and waited for both (docs/scheduling.md).
        raw["parameters"] = {k: {"string_value": v} for k, v in scoring.parameters().items()}
    return _build(raw)


def _openvino_scorer(spec: ModelSpec, limits: ServingLimits, name: str, scoring: CpuScoring) -> mc.ModelConfig:
    """Triton's openvino backend on the ONNX export (model_repository/openvino_options.py has what it parses)."""
    if scoring.runtime != "openvino":
        raise ValueError("the openvino target runs OpenVINO: --runtime onnxruntime applies to the portable target")
    parameters = {**openvino_parameters(scoring.precision, scoring.threads), **scoring.parameters()}
    return _build({
        "name": model_names(name)["scorer"],
        "backend": "openvino",
        "default_model_filename": ONNX_FILENAME,
        # Not batching: the backend would fix the model's batch to max_batch_size and refuse any other
        # (openvino_options.py); the dispatch already sends whole sub-batches, [rows, length] each.
        "max_batch_size": 0,
        "input": [_tensor(t.name, limits.scorer_input_dtype, [-1, *t.dims]) for t in (spec.input_ids, spec.attention_mask)],
        "output": [_tensor(spec.scores.name, spec.scores.dtype, [-1, *spec.scores.dims])],
        "instance_group": [{"kind": "KIND_CPU", "count": 1}],
        # Orders waiting sub-batches, with no queue policy as on the other scorers (scorer_config says why).
        "dynamic_batching": {},
        "parameters": {k: {"string_value": v} for k, v in parameters.items()},
    })


def _warmup(spec: ModelSpec, limits: ServingLimits, profiles: EngineProfiles) -> list[dict]:
    """One warm-up request per padded length the dispatch sends (every bucket, so every profile)."""
    lengths = limits.seq_buckets(spec) or tuple(high for _, _, high in profiles.ranges(spec))
    return [{
        "name": f"seq_{length}", "batch_size": 1,
        "inputs": {t.name: {"data_type": TRITON_DTYPES[limits.scorer_input_dtype], "dims": [length], "zero_data": True}
                   for t in (spec.input_ids, spec.attention_mask)},
    } for length in lengths]


def to_pbtxt(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)
