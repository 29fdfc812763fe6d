"""TensorRT engines from an export: strongly typed network, one profile per sequence bucket, timing cache, memory budget."""

from __future__ import annotations

import json
import logging
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mxbai_triton.core.engine import EngineProfiles
from mxbai_triton.core.memory import (
    ARCHITECTURES,
    INSTANCE_BUDGET_BYTES,
    Architecture,
    check_instance_budget,
    deployment_shape,
    profile_memory,
    weight_bytes,
)
from mxbai_triton.core.model import ONNX_FILENAME, ModelSpec

log = logging.getLogger(__name__)

PLAN_FILENAME = "model.plan"
METADATA_FILENAME = "engine.json"
TIMING_CACHE_FILENAME = "timing.cache"
TENSORRT_MISSING = (
    "TensorRT is not installed (import tensorrt failed). Build engines where TensorRT (10.15 or later: the graph "
    "uses ONNX Attention and RMSNormalization) and an NVIDIA GPU are: NVIDIA's TensorRT container of the same "
    "release as your Triton (e.g. nvcr.io/nvidia/tensorrt:26.10-py3 for tritonserver:26.10), or `pip install "
    "tensorrt-cu13==<the TensorRT version of your Triton>` on a CUDA 13 machine (the `gpu` extra, pinned so). An "
    "engine only loads in the TensorRT version that built it."
)
# Graph dtype each precision needs: strongly typed networks take their types from the ONNX graph.
PRECISION_GRAPH_DTYPE = {"fp16": "fp16", "fp32": "fp32", "bf16": "bf16"}


class TensorRTMissing(ImportError):
    """TensorRT cannot be imported here."""


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as error:
        raise TensorRTMissing(TENSORRT_MISSING) from error
    return tensorrt


def parse_profiles(text: str) -> tuple[tuple[int, int, int], ...]:
    """"1:256:256,257:512:1024" -> ((1, 256, 256), (257, 512, 1024)) as (min, opt, max) sequence lengths."""
    profiles = []
    for part in text.split(","):
        pieces = part.split(":")
        if len(pieces) != 3 or not all(p.strip().isdigit() for p in pieces):
            raise ValueError(f"profile {part!r} is not MIN:OPT:MAX")
        low, opt, high = (int(p) for p in pieces)
        if not 1 <= low <= opt <= high:
            raise ValueError(f"profile {part!r} needs 1 <= MIN <= OPT <= MAX")
        profiles.append((low, opt, high))
    return tuple(profiles)


def _gpu_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _progress_monitor(trt):
    class LoggingMonitor(trt.IProgressMonitor):
        """Logs TensorRT's build phases; a plain line per phase keeps CI logs readable."""

        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self._start: dict[str, float] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self._start[phase_name] = time.perf_counter()
            log.info("tensorrt: %s (%d steps) ...", phase_name, num_steps)

        def step_complete(self, phase_name, step):
            return True  # never cancel

        def phase_finish(self, phase_name):
            log.info("tensorrt: %s done in %.1fs", phase_name, time.perf_counter() - self._start.get(phase_name, time.perf_counter()))

    return LoggingMonitor()


def estimated_memory(export_dir: Path, spec: ModelSpec, precision: str, profiles: tuple[tuple[int, int, int], ...],
                     rows: int) -> dict | None:
    """core/memory.py's figures for this build (weights, each profile), or None without the model's shape numbers."""
    if (export_dir / "config.json").is_file():
        arch = Architecture.from_checkpoint(export_dir)
    elif spec.name in ARCHITECTURES:
        arch = ARCHITECTURES[spec.name]
    else:
        log.warning("%s has no config.json (exported before it was written): no memory estimate before the build", export_dir)
        return None
    return {"weight_bytes": weight_bytes(arch, precision),
            "profile_bytes": [p.activation_bytes for p in profile_memory(profiles, rows, arch, precision)]}


def reported_memory(trt, logger, serialized) -> dict:
    """What TensorRT says the built engine needs on the device: the plan it loads (weights and kernels) and each
    profile's execution-context memory (`ICudaEngine.get_device_memory_size_for_profile_v2`, TensorRT
    include/NvInferRuntime.h:3211, python/src/infer/pyCore.cpp:1426)."""
    engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
    if engine is None:
        raise RuntimeError("TensorRT could not deserialize the engine it built (see its log above)")
    return {"plan_bytes": int(serialized.nbytes),
            "profile_bytes": [int(engine.get_device_memory_size_for_profile_v2(i)) for i in range(engine.num_optimization_profiles)]}


def build_engine(
    export_dir: str | Path,
    out_dir: str | Path,
    *,
    precision: str = "fp16",
    profiles: tuple[tuple[int, int, int], ...] | None = None,
    max_batch_size: int | None = None,
    optimization_level: int = 3,
    timing_cache: str | Path | None = None,
) -> Path:
    """Build `out_dir/model.plan` from `export_dir/model.onnx` with the TensorRT 10 Python API.

    Args:
        export_dir: Export whose graph dtype matches `precision` (`export --dtype fp16` for fp16).
        out_dir: Engine directory: model.plan, engine.json (profiles, batch, bindings, memory), timing cache.
        precision: "fp16", "bf16" or "fp32"; the network is strongly typed, so precision comes from
            the graph's types (sensitive ops carry explicit fp32 casts), not from builder flags.
        profiles: (min, opt, max) sequence lengths; default: core.engine.EngineProfiles', ending on tokenizer buckets.
        max_batch_size: Rows every profile covers; default: the model's serving default (48 base, 24 large).
        optimization_level: Builder optimization level 0..5.
        timing_cache: Timing cache file to reuse and update (default: out_dir/timing.cache).

    Returns:
        Path of model.plan.

    Raises:
        OverBudget: Before the build when the memory model's estimate, after it when TensorRT's own
            figures (plan + every profile's context memory, all kept by one Triton instance) exceed
            one instance's budget; no model.plan is written then.
    """
    trt = import_tensorrt()  # first: without TensorRT nothing else happens
    export_dir, out = Path(export_dir), Path(out_dir)
    spec = ModelSpec.load(export_dir)
    if precision not in PRECISION_GRAPH_DTYPE:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_GRAPH_DTYPE)}, got {precision!r}")
    if spec.dtype != PRECISION_GRAPH_DTYPE[precision]:
        raise ValueError(
            f"{export_dir} holds a {spec.dtype} graph; a {precision} engine needs `mxbai-triton export --dtype {precision}`"
        )
    default_profiles, default_rows = deployment_shape(spec)
    profiles = profiles or default_profiles
    max_batch = max_batch_size or default_rows
    estimate = estimated_memory(export_dir, spec, precision, profiles, max_batch)
    if estimate:  # what cannot fit is refused before a build of many minutes
        check_instance_budget(estimate["weight_bytes"], estimate["profile_bytes"], source="memory model estimate",
                              dtype=precision)
    out.mkdir(parents=True, exist_ok=True)
    for stale in (out / PLAN_FILENAME, out / METADATA_FILENAME):  # a refused build must not leave an older engine behind
        stale.unlink(missing_ok=True)
    cache_path = Path(timing_cache) if timing_cache else out / TIMING_CACHE_FILENAME

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10 needs the flag; TensorRT 11 networks are strongly typed without it.
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(export_dir / ONNX_FILENAME)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {export_dir / ONNX_FILENAME}: {errors}")

    config = builder.create_builder_config()
    config.builder_optimization_level = optimization_level
    config.progress_monitor = _progress_monitor(trt)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    opt_batch = max(1, max_batch // 2)
    for low, opt, high in profiles:
        profile = builder.create_optimization_profile()
        for name in (spec.input_ids.name, spec.attention_mask.name):
            profile.set_shape(name, (1, low), (opt_batch, opt), (max_batch, high))
        config.add_optimization_profile(profile)

    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see its log above)")
    build_seconds = round(time.perf_counter() - started, 1)
    # Saved even when the engine is refused below: it shortens the next build.
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    reported = reported_memory(trt, logger, serialized)
    reported["total_bytes"] = check_instance_budget(reported["plan_bytes"], reported["profile_bytes"], source="TensorRT",
                                                    dtype=precision)
    plan = out / PLAN_FILENAME
    plan.write_bytes(bytes(serialized))
    bindings = {
        network.get_input(i).name: trt.nptype(network.get_input(i).dtype).__name__ for i in range(network.num_inputs)
    }
    metadata = {
        "tensorrt_version": trt.__version__,
        "gpu": _gpu_name(),
        "host": platform.node(),
        "precision": precision,
        "optimization_level": optimization_level,
        "profiles": [list(p) for p in profiles],
        "batch": {"min": 1, "opt": opt_batch, "max": max_batch},
        "input_dtypes": bindings,
        "build_seconds": build_seconds,
        "source": spec.source,
        # TensorRT's figures beside the memory model's: the first GPU builds tell how far apart they are.
        "memory": {"instance_budget_bytes": INSTANCE_BUDGET_BYTES, "tensorrt": reported, "estimate": estimate},
    }
    (out / METADATA_FILENAME).write_text(json.dumps(metadata, indent=2) + "\n")
    return plan


def memory_summary(engine_dir: str | Path) -> str:
    """One line: TensorRT's device memory for the engine in `engine_dir` beside the memory model's estimate."""
    from mxbai_triton.core.memory import GIB

    memory = json.loads((Path(engine_dir) / METADATA_FILENAME).read_text())["memory"]
    reported, estimate = memory["tensorrt"], memory["estimate"]
    profiles = " + ".join(f"{b / GIB:.2f}" for b in reported["profile_bytes"])
    line = (f"TensorRT: plan {reported['plan_bytes'] / GIB:.2f} GiB + profiles {profiles} GiB = "
            f"{reported['total_bytes'] / GIB:.2f} GiB of {memory['instance_budget_bytes'] / GIB:.1f} GiB per instance")
    if estimate:
        total = estimate["weight_bytes"] + sum(estimate["profile_bytes"])
        line += f" (memory model: {total / GIB:.2f} GiB)"
    return line


@dataclass(frozen=True)
class EngineFacts:
    """What a built engine fixes for the repository that serves it (recorded in engine.json at build time)."""

    profiles: EngineProfiles
    max_batch_size: int
    input_dtype: str  # numpy name of the input_ids / attention_mask bindings


def engine_facts(engine_dir: str | Path) -> EngineFacts:
    path = Path(engine_dir) / METADATA_FILENAME
    if not (Path(engine_dir) / PLAN_FILENAME).is_file():
        raise FileNotFoundError(f"no {PLAN_FILENAME} in {engine_dir}: build one with `mxbai-triton build-engine`")
    if not path.is_file():
        raise FileNotFoundError(f"no {METADATA_FILENAME} in {engine_dir}: build the engine with `mxbai-triton build-engine`")
    metadata = json.loads(path.read_text())
    dtypes = set(metadata["input_dtypes"].values())
    if len(dtypes) != 1:
        raise ValueError(f"{path}: the engine's inputs have different dtypes {sorted(dtypes)}; the tokenizer sends one")
    return EngineFacts(EngineProfiles.of(metadata["profiles"]), int(metadata["batch"]["max"]), dtypes.pop())
