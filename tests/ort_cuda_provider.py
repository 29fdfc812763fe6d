"""The names and value forms ONNX Runtime's CUDA provider parses, to check generated configs against."""

from __future__ import annotations

import re

# Triton's onnxruntime backend hands every parameter of `gpu_execution_accelerator { name: "cuda" }`
# to the CUDA provider as a string, unchanged (onnxruntime_backend src/onnxruntime.cc:749-771, then
# UpdateCUDAProviderOptions at :886). The provider parses them in
# onnxruntime/core/providers/cuda/cuda_execution_provider_info.cc (CUDAExecutionProviderInfo::
# FromProviderOptions): enums by name only, integers with std::from_chars, booleans with
# `istream >> bool` ("0" or "1"); an unknown name fails the session ("Unknown provider option",
# core/framework/provider_options_utils.h). Only the backend's deprecated top-level `parameters`
# take arena_extend_strategy as "0"/"1" (onnxruntime.cc:845-866).
ENUMS = {
    "arena_extend_strategy": ("kNextPowerOfTwo", "kSameAsRequested"),
    "cudnn_conv_algo_search": ("EXHAUSTIVE", "HEURISTIC", "DEFAULT"),
}
UNSIGNED = ("device_id", "gpu_mem_limit", "tunable_op_max_tuning_duration_ms")
BOOLEANS = (
    "do_copy_in_default_stream", "cudnn_conv_use_max_workspace", "enable_cuda_graph", "cudnn_conv1d_pad_to_nc1d",
    "tunable_op_enable", "tunable_op_tuning_enable", "enable_skip_layer_norm_strict_mode", "prefer_nhwc",
    "use_ep_level_unified_stream", "use_tf32",
)
# Set by the backend itself (device, stream) or addresses of user allocators: never ours to set.
BACKEND_OWNED = ("has_user_compute_stream", "user_compute_stream", "gpu_external_alloc", "gpu_external_free",
                 "gpu_external_empty_cache")


def option_problems(parameters: dict[str, str]) -> list[str]:
    """Every name or value of `parameters` that the CUDA provider would reject, as sentences."""
    problems = []
    for name, value in parameters.items():
        if name in ENUMS:
            if value not in ENUMS[name]:
                problems.append(f"{name}={value!r}: the CUDA provider takes one of {', '.join(ENUMS[name])} (names, not numbers)")
        elif name in UNSIGNED:
            if not re.fullmatch(r"[0-9]+", value):
                problems.append(f"{name}={value!r}: the CUDA provider takes a decimal unsigned integer")
        elif name in BOOLEANS:
            if value not in ("0", "1"):
                problems.append(f"{name}={value!r}: the CUDA provider takes 0 or 1")
        elif name in BACKEND_OWNED:
            problems.append(f"{name}: set by Triton's onnxruntime backend, not by the model config")
        else:
            problems.append(f"{name}: not an option of ONNX Runtime's CUDA provider")
    return problems
