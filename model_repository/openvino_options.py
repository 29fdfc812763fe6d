"""Triton's openvino backend: the config parameters it parses and the values it takes, to write and check the openvino target.

Read from triton-inference-server/openvino_backend at db19304 (src/openvino.cc, src/openvino_utils.cc):
- ModelState::ParseParameters(device) (openvino.cc:257-275) reads exactly INFERENCE_NUM_THREADS,
  COMPILATION_NUM_THREADS, HINT_BF16, NUM_STREAMS and PERFORMANCE_HINT; ParseParameterHelper
  (:347-422) lowercases each value, then takes a non-negative number for the thread counts,
  only "yes" for HINT_BF16 (-> ov::hint::inference_precision(bf16), :372-381), AUTO/NUMA/an integer
  for NUM_STREAMS (:382-395), LATENCY/THROUGHPUT/CUMULATIVE_THROUGHPUT for PERFORMANCE_HINT (:396-413).
  Other keys are never read (they are ours: runtime, precision, threads). The properties go to
  ov::Core::set_property for the device (ConfigureOpenvinoCore, :425-448).
- There is no parameter for f32: OpenVINO's CPU plugin runs bf16 by default where the CPU has
  AVX512_BF16 (intel_cpu src/config.cpp, Config::readProperties, `if (!inferencePrecisionSetExplicitly)`),
  so this backend cannot keep fp32 on such a CPU; `repo` refuses fp32 for it there.
- The model file is `default_model_filename` (else model.xml: ReadModel, :205-237); ONNX is read as it is,
  external data beside it.
- max_batch_size > 0 makes the backend fix the model's batch to max_batch_size (ov::set_batch,
  :622-625) and reject any execution of another batch size unless ENABLE_BATCH_PADDING pads every
  execution to it (:1067-1100): our sub-batches vary in rows, so the target declares max_batch_size 0
  and dims [-1, -1], which the backend compares with the model's dynamic dims (CompareDimsSupported,
  openvino_utils.cc:209-271; a dynamic dimension matches any, doesMatch :197-207).
- Instances must be KIND_CPU (:963-968).
"""

from __future__ import annotations

import re

# Parameters the backend reads, each with a check of the value as ParseParameterHelper takes it (lowercased).
BACKEND_PARAMETERS = {
    "INFERENCE_NUM_THREADS": (r"[0-9]+", "a non-negative number"),
    "COMPILATION_NUM_THREADS": (r"[0-9]+", "a non-negative number"),
    "HINT_BF16": (r"yes", "YES"),
    "NUM_STREAMS": (r"auto|numa|-?[0-9]+", "AUTO, NUMA or a number"),
    "PERFORMANCE_HINT": (r"latency|throughput|cumulative_throughput", "LATENCY, THROUGHPUT or CUMULATIVE_THROUGHPUT"),
}
# Read by ParseParameters() as booleans/strings (openvino.cc:240-254); the target leaves them unset.
BACKEND_FLAGS = ("SKIP_OV_DYNAMIC_BATCHSIZE", "ENABLE_BATCH_PADDING", "RESHAPE_IO_LAYERS", "TARGET_DEVICE", "CPU_EXTENSION_PATH")
# Ours, for people and clients reading the config; the backend never reads them.
OUR_PARAMETERS = ("runtime", "precision", "threads")


def backend_parameters(precision: str, threads: int) -> dict[str, str]:
    """What the openvino target asks of the backend: one stream at a time, latency mode, the precision, the threads."""
    # One stream, latency mode: an execution is one sub-batch of up to ~32k tokens, which keeps every
    # core busy by itself; streams would split the cores between concurrent sub-batches instead.
    parameters = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    if threads:
        parameters["INFERENCE_NUM_THREADS"] = str(threads)
    if precision == "bf16":
        parameters["HINT_BF16"] = "YES"
    return parameters


def parameter_problems(parameters: dict[str, str]) -> list[str]:
    """Every backend parameter of `parameters` the openvino backend would reject or we never set, as sentences."""
    problems = []
    for name, value in parameters.items():
        if name in BACKEND_PARAMETERS:
            pattern, form = BACKEND_PARAMETERS[name]
            if not re.fullmatch(pattern, value.lower()):
                problems.append(f"{name}={value!r}: the openvino backend takes {form}")
        elif name in BACKEND_FLAGS:
            problems.append(f"{name}: changes how the backend batches or reshapes; the openvino target leaves it unset")
        elif name not in OUR_PARAMETERS:
            problems.append(f"{name}: neither read by the openvino backend nor one of ours")
    return problems


def openvino_properties(parameters: dict[str, str]) -> dict[str, str]:
    """The OpenVINO properties the backend derives from `parameters` (ParseParameterHelper), for ov.Core.compile_model."""
    names = {"INFERENCE_NUM_THREADS": "INFERENCE_NUM_THREADS", "COMPILATION_NUM_THREADS": "COMPILATION_NUM_THREADS",
             "NUM_STREAMS": "NUM_STREAMS", "PERFORMANCE_HINT": "PERFORMANCE_HINT"}
    properties = {names[k]: v.upper() for k, v in parameters.items() if k in names}
    if parameters.get("HINT_BF16", "").lower() == "yes":
        properties["INFERENCE_PRECISION_HINT"] = "bf16"
    return properties
