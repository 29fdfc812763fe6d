"""ONNX Runtime CUDA provider options of the onnx target's scorer (the provider's parsing rules: tests/ort_cuda_provider.py)."""

from __future__ import annotations

from mxbai_triton.core.memory import INSTANCE_BUDGET_BYTES

# What the onnx target's scorer asks for: allocate what is requested (the default arena grows by
# powers of two and never shrinks), within this instance's share of the GPU.
SCORER_OPTIONS = {"arena_extend_strategy": "kSameAsRequested", "gpu_mem_limit": str(INSTANCE_BUDGET_BYTES)}
