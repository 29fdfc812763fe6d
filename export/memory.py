"""GPU memory of a scorer engine: weights, activation bytes per token, and what each TensorRT profile needs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .spec import ModelSpec
from .standin import SIZES

DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
GIB = 1 << 30
# An 80 GB H100 as CUDA reports it, less the CUDA context, cuBLAS/cuDNN workspaces and fragmentation,
# shared by two engine instances (a second model or a second copy for overlap).
GPU_BYTES = 79 * GIB
INSTANCES_PER_GPU = 2
RESERVED_BYTES = 6 * GIB
INSTANCE_BUDGET_BYTES = (GPU_BYTES - RESERVED_BYTES) // INSTANCES_PER_GPU
# TensorRT (10.x) has failed on tensors of 2^31 elements or more (TensorRT#3815).
MAX_TENSOR_ELEMENTS = 1 << 31


@dataclass(frozen=True)
class Architecture:
    """The Qwen2 shape numbers the memory model needs."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int = 151936

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def parameters(self) -> int:
        kv = self.kv_heads * self.head_dim
        attention = self.hidden * (self.hidden + 2 * kv) + (self.hidden + 2 * kv) + self.hidden * self.hidden
        mlp = 3 * self.hidden * self.intermediate
        return self.vocab * self.hidden + self.layers * (attention + mlp + 2 * self.hidden) + self.hidden

    @classmethod
    def from_checkpoint(cls, directory: str | Path) -> "Architecture":
        config = json.loads((Path(directory) / "config.json").read_text(encoding="utf-8"))
        return cls(config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
                   config["num_key_value_heads"], config["intermediate_size"], config["vocab_size"])


ARCHITECTURES = {
    "mxbai-rerank-base-v2": Architecture(*SIZES["base"]),
    "mxbai-rerank-large-v2": Architecture(*SIZES["large"]),
}


def weight_bytes(arch: Architecture, dtype: str) -> int:
    return arch.parameters * DTYPE_BYTES[dtype]


def activation_bytes_per_token(arch: Architecture, dtype: str) -> int:
    """Every intermediate tensor of one layer of the fused-attention graph, per token, all alive at once.

    An upper bound: TensorRT reuses activation memory across layers (so one layer counts) and often
    within one (which this does not count on). Fused attention keeps only per-row softmax statistics
    (two fp32 values per head and token), never a [seq, seq] matrix.
    """
    e, h, i = DTYPE_BYTES[dtype], arch.hidden, arch.intermediate
    kv = arch.kv_heads * arch.head_dim
    residual = 3 * 4 * h  # fp32 stream in, after attention, after the MLP
    norms = 2 * (4 * h + e * h)  # fp32 RMSNorm output and its cast, twice
    qkv = e * (h + 2 * kv) + 4 * (h + kv) + e * (h + kv)  # projections, fp32 RoPE of Q and K, casts back
    attention = e * h + 2 * 4 * arch.heads + e * h  # output, softmax statistics, o_proj
    mlp = 3 * e * i + e * h  # gate, up, their product, down
    return residual + norms + qkv + attention + mlp


@dataclass(frozen=True)
class ProfileMemory:
    """What one optimization profile's largest shape needs."""

    seq_min: int
    seq_max: int
    rows: int
    activation_bytes: int
    largest_tensor_elements: int

    @property
    def tokens(self) -> int:
        return self.rows * self.seq_max


def profile_memory(spec: ModelSpec, arch: Architecture, dtype: str) -> list[ProfileMemory]:
    """Each TensorRT profile at its max shape [max_batch_size, seq_max]."""
    per_token = activation_bytes_per_token(arch, dtype)
    out = []
    for low, _, high in spec.trt_profiles:
        tokens = spec.max_batch_size * high
        # The largest tensor of a layer is the MLP's [rows, seq, intermediate] (the embedding table aside).
        largest = max(tokens * arch.intermediate, arch.vocab * arch.hidden)
        out.append(ProfileMemory(low, high, spec.max_batch_size, tokens * per_token, largest))
    return out


def engine_bytes(spec: ModelSpec, arch: Architecture, dtype: str) -> int:
    """Weights plus the largest profile's activations: one execution context allocated at a time
    (Triton's tensorrt backend with `execution_context_allocation_strategy` ON_PROFILE_CHANGE)."""
    return weight_bytes(arch, dtype) + max(p.activation_bytes for p in profile_memory(spec, arch, dtype))


def dispatch_bytes(spec: ModelSpec, arch: Architecture, dtype: str) -> int:
    """Activations of one dispatched sub-batch at the dispatch's token budget."""
    return spec.max_batch_tokens * activation_bytes_per_token(arch, dtype)


def memory_table(spec: ModelSpec, arch: Architecture, dtype: str) -> str:
    """Markdown: each profile's max shape, its activations, and the engine total against the budget."""
    weights = weight_bytes(arch, dtype)
    lines = [
        f"{spec.name} ({dtype}): weights {weights / GIB:.2f} GiB, {activation_bytes_per_token(arch, dtype) / 1024:.1f} KiB "
        f"of activations per token; budget per instance {INSTANCE_BUDGET_BYTES / GIB:.1f} GiB",
        "", "| profile (seq) | max shape | activations GiB | weights + activations GiB | largest tensor (elements) |",
        "|---|---|---:|---:|---:|",
    ]
    for p in profile_memory(spec, arch, dtype):
        lines.append(f"| {p.seq_min}–{p.seq_max} | {p.rows} × {p.seq_max} | {p.activation_bytes / GIB:.2f} | "
                     f"{(weights + p.activation_bytes) / GIB:.2f} | {p.largest_tensor_elements:,} |")
    return "\n".join(lines)
