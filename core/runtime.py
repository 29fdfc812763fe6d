"""The CPU runtimes of the scorer: ONNX Runtime sessions, OpenVINO compiled models, and the precision this CPU runs natively."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PRECISIONS = ("fp32", "bf16")
RUNTIMES = ("onnxruntime", "openvino")
# The CPU flags (lscpu, /proc/cpuinfo) of bf16 dot products in hardware: AVX512_BF16 (Cooper Lake,
# Zen 4 and later) and AMX (Sapphire Rapids and later). Without them a bf16 matmul is emulated and
# slower than fp32, so bf16 is refused there rather than served slower.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# OpenVINO's names of the two precisions (INFERENCE_PRECISION_HINT).
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
# The python scorer's gauge on Triton's metrics port: 1 for the precision and runtime it loaded with
# (labels model, precision, runtime, threads); serve's ready line reads it back.
PRECISION_METRIC = "mxbai_scorer_precision"


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The feature flags of this machine's CPU, as lscpu lists them (empty where /proc/cpuinfo is absent)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def missing_bf16(flags: frozenset[str] | None = None) -> str | None:
    """None where the CPU computes bf16 natively; otherwise one sentence naming the features it lacks."""
    flags = cpu_flags() if flags is None else flags
    if any(flag in flags for flag in NATIVE_BF16_FLAGS):
        return None
    return f"this CPU has no native bf16: neither {' nor '.join(NATIVE_BF16_FLAGS)} is among its flags (lscpu)"


@dataclass(frozen=True)
class CpuScoring:
    """How a CPU scorer computes: the runtime, its precision, its threads.

    Written by `repo` as the scorer's config parameters (visible through Triton's model-config API),
    read back by the python scorer; the ensemble publishes the precision to clients.
    """

    runtime: str = "onnxruntime"
    precision: str = "fp32"
    # Intra-op threads of the one execution at a time (one instance, one stream); 0 lets the runtime
    # take every core. The tokenizer instances share those cores, but only between executions.
    threads: int = 0

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.precision == "bf16" and self.runtime != "openvino":
            raise ValueError("bf16 on a CPU runs on OpenVINO (--runtime openvino): ONNX Runtime's CPU provider "
                             "has no bf16 kernels for this graph")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")

    @classmethod
    def for_precision(cls, precision: str = "fp32", runtime: str | None = None, threads: int = 0) -> "CpuScoring":
        """The runtime that serves `precision` when none is named: ONNX Runtime for fp32, OpenVINO for bf16."""
        return cls(runtime or ("openvino" if precision == "bf16" else "onnxruntime"), precision, threads)

    def with_overrides(self, **changes) -> "CpuScoring":
        return dataclasses.replace(self, **changes)

    def parameters(self) -> dict[str, str]:
        return {"runtime": self.runtime, "precision": self.precision, "threads": str(self.threads)}

    @classmethod
    def from_parameters(cls, parameters: dict[str, str]) -> "CpuScoring":
        """From a scorer config's parameters; a config without them is the fp32 ONNX Runtime scorer."""
        return cls(parameters.get("runtime", "onnxruntime"), parameters.get("precision", "fp32"),
                   int(parameters.get("threads") or parameters.get("intra_op_threads") or 0))

    def describe(self) -> str:
        return f"{self.precision} on {'OpenVINO' if self.runtime == 'openvino' else 'ONNX Runtime'}"


def onnx_session(model: str | Path | bytes, *, threads: int = 0, optimize: bool = True, cuda_options: dict | None = None):
    """An InferenceSession of `model` (a path, or a serialised ModelProto), on the CPU unless `cuda_options` are given.

    Args:
        model: The graph: a file (external data beside it) or serialised bytes.
        threads: Intra-op threads; 0 lets ONNX Runtime use every core.
        optimize: All graph optimisations (the serving setting); False runs the graph as written.
        cuda_options: Run on ONNX Runtime's CUDA provider (onnxruntime-gpu) with these provider
            options, as Triton's onnxruntime backend passes them; raises where that provider is missing.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    options.intra_op_num_threads = threads
    source = model if isinstance(model, bytes) else str(model)
    if cuda_options is None:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    # ONNX Runtime falls back to the CPU with a warning when the CUDA provider cannot load: refuse instead.
    session = ort.InferenceSession(source, options, providers=[("CUDAExecutionProvider", cuda_options)])
    if "CUDAExecutionProvider" not in session.get_providers():
        raise RuntimeError("ONNX Runtime's CUDA provider is not available (install onnxruntime-gpu: the `gpu` extra)")
    return session


def openvino_model(model: str | Path, *, precision: str = "fp32", threads: int = 0, flags: frozenset[str] | None = None):
    """The ONNX export compiled by OpenVINO for this CPU at `precision`, one stream (one execution at a time).

    The precision is always set: OpenVINO's CPU plugin defaults to bf16 where the CPU has
    AVX512_BF16, and keeps f32 without a word where bf16 is asked of a CPU without it (intel_cpu
    src/config.cpp, Config::readProperties); so bf16 is refused first on such a CPU, and the compiled
    model's own precision is checked after.

    Raises:
        ValueError: bf16 on a CPU without native bf16 (the message names the missing flags), or a
            compiled precision other than the one asked for.
    """
    import openvino as ov

    if precision == "bf16" and (missing := missing_bf16(flags)):
        raise ValueError(f"bf16 refused: {missing}; serve fp32 (mxbai-triton repo --precision fp32)")
    config = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision], "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    core = ov.Core()
    # The ov.Model goes out of scope after compiling: the plugin keeps its own (converted) weights only.
    compiled = core.compile_model(core.read_model(str(model)), "CPU", config)
    compiled_precision = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
    if compiled_precision != OPENVINO_PRECISIONS[precision]:
        raise ValueError(f"OpenVINO compiled {model} at {compiled_precision}, not {OPENVINO_PRECISIONS[precision]} as asked")
    return compiled


def cpu_scorer(model: str | Path, input_names: tuple[str, str], scoring: CpuScoring = CpuScoring(),
               flags: frozenset[str] | None = None) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """scores = f(input_ids, attention_mask) for the export at `model`, on `scoring`'s runtime and precision.

    Not thread-safe (one OpenVINO infer request): one caller at a time, as a python model's execute.
    """
    if scoring.runtime == "onnxruntime":
        session = onnx_session(model, threads=scoring.threads)
        return lambda ids, mask: session.run(None, dict(zip(input_names, (ids, mask))))[0]
    compiled = openvino_model(model, precision=scoring.precision, threads=scoring.threads, flags=flags)
    request = compiled.create_infer_request()
    output = compiled.output(0)
    # The request reuses its output buffer on the next call: copy the scores out.
    return lambda ids, mask: np.array(request.infer(dict(zip(input_names, (ids, mask))))[output], dtype=np.float32)
