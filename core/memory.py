"""GPU memory of a scorer engine: weights, activation bytes per token, each TensorRT profile, and the instance budget."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .engine import EngineProfiles
from .model import ModelSpec
from .serving import ServingLimits

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
# Graph dtypes whose attention no fused kernel runs: TensorRT's fused attention kernels take fp16/bf16
# (docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/transformers-fused-attention.html), and
# ONNX Runtime's CUDA provider runs fp32 GQA `Attention` unfused (onnxruntime#27880). Unfused, each layer
# materialises [rows, heads, seq, seq] fp32 scores.
UNFUSED_ATTENTION_DTYPES = frozenset({"fp32"})

VOCAB_SIZE = 151936
# Qwen2 shapes of the stand-ins: hidden, layers, attention heads, kv heads, intermediate. base/large are
# the real mxbai-rerank-v2 ones.
SIZES: dict[str, tuple[int, int, int, int, int]] = {
    "tiny": (64, 2, 4, 2, 128),
    "small": (256, 4, 4, 2, 704),
    "base": (896, 24, 14, 2, 4864),
    "large": (1536, 28, 12, 2, 8960),
}


@dataclass(frozen=True)
class Architecture:
    """The Qwen2 shape numbers the memory model needs."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int = VOCAB_SIZE

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
    """Every intermediate tensor of one causal layer of the fused-attention graph, per token, all alive at once.

    An upper bound: TensorRT reuses activation memory across layers (so one layer counts) and often
    within one (which this does not count on). Fused attention keeps only per-row softmax statistics
    (two fp32 values per head and token), never a [seq, seq] matrix; the last layer, one query per
    row, needs less.
    """
    e, h, i = DTYPE_BYTES[dtype], arch.hidden, arch.intermediate
    kv = arch.kv_heads * arch.head_dim
    residual = 3 * 4 * h  # fp32 stream in, after attention, after the MLP
    norms = 2 * (4 * h + e * h)  # fp32 RMSNorm output and its cast, twice
    # projections, fp32 RoPE of Q and K, casts back, K and V zeroed at pad positions
    qkv = e * (h + 2 * kv) + 4 * (h + kv) + e * (h + kv) + e * 2 * kv
    attention = e * h + 2 * 4 * arch.heads + e * h  # output, softmax statistics, o_proj
    mlp = 3 * e * i + e * h  # gate, up, their product, down
    return residual + norms + qkv + attention + mlp


def unfused_attention_bytes(arch: Architecture, dtype: str, rows: int, seq: int) -> int:
    """One layer's [rows, heads, seq, seq] fp32 scores where attention runs unfused, else 0.

    A lower bound of the unfused path (its softmax output may be a second such tensor): enough to
    show that it cannot fit.
    """
    return rows * arch.heads * seq * seq * 4 if dtype in UNFUSED_ATTENTION_DTYPES else 0


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


def deployment_shape(model: ModelSpec) -> tuple[tuple[tuple[int, int, int], ...], int]:
    """The default engine profiles of `model` ((min, opt, max) each) and the rows each covers (max_batch_size)."""
    return EngineProfiles().ranges(model), ServingLimits.for_model(model).max_batch_size


def profile_memory(ranges, rows: int, arch: Architecture, dtype: str) -> list[ProfileMemory]:
    """Each TensorRT profile of `ranges` ((min, opt, max) each) at its max shape [rows, max]."""
    per_token = activation_bytes_per_token(arch, dtype)
    out = []
    for low, _, high in ranges:
        tokens = rows * high
        unfused = unfused_attention_bytes(arch, dtype, rows, high)
        # The largest tensor of a layer is the MLP's [rows, seq, intermediate] (the embedding table
        # aside), or unfused attention's scores.
        largest = max(tokens * arch.intermediate, arch.vocab * arch.hidden, unfused // 4)
        out.append(ProfileMemory(low, high, rows, tokens * per_token + unfused, largest))
    return out


class OverBudget(RuntimeError):
    """An engine's weights and profile memory exceed one instance's share of the GPU."""


def check_instance_budget(weight_bytes_: int, profile_bytes: list[int], *, source: str, dtype: str,
                          budget: int = INSTANCE_BUDGET_BYTES) -> int:
    """Weights + the sum of the profiles' memory, or OverBudget naming each figure and the ways out.

    Args:
        weight_bytes_: Weights (or the serialized plan) loaded on the device.
        profile_bytes: Device memory of each optimization profile, in profile order.
        source: Where the figures come from ("TensorRT" or "the memory model"), for the message.
        dtype: Graph dtype; fp32 gets the advice to export fp16/bf16 instead.
        budget: Bytes one instance may use.

    Returns:
        The total in bytes.
    """
    total = weight_bytes_ + sum(profile_bytes)
    if total <= budget:
        return total
    profiles = " + ".join(f"{b / GIB:.2f}" for b in profile_bytes)
    advice = ("fp32 attention runs unfused ([rows, heads, length, length] fp32 scores): export the model with "
              "`mxbai-triton export MODEL --dtype fp16` (or bf16) and build that"
              if dtype in UNFUSED_ATTENTION_DTYPES else
              "list fewer or shorter profiles (--profiles MIN:OPT:MAX,...) or lower the repository's max_batch_size")
    raise OverBudget(
        f"{source}: weights {weight_bytes_ / GIB:.2f} GiB + profiles {profiles} GiB = {total / GIB:.2f} GiB, over one "
        f"instance's budget of {budget / GIB:.1f} GiB (each profile's execution context keeps its memory); {advice}"
    )


def memory_table(spec: ModelSpec, arch: Architecture, dtype: str) -> str:
    """Markdown: each default profile's max shape and activations, and the instance total (weights + every
    profile) against the budget."""
    ranges, rows = deployment_shape(spec)
    weights = weight_bytes(arch, dtype)
    lines = [
        f"{spec.name} ({dtype}): weights {weights / GIB:.2f} GiB, {activation_bytes_per_token(arch, dtype) / 1024:.1f} KiB "
        f"of activations per token; budget per instance {INSTANCE_BUDGET_BYTES / GIB:.1f} GiB",
        "", "| profile (seq) | max shape | activations GiB | largest tensor (elements) |",
        "|---|---|---:|---:|",
    ]
    memories = profile_memory(ranges, rows, arch, dtype)
    for p in memories:
        lines.append(f"| {p.seq_min}–{p.seq_max} | {p.rows} × {p.seq_max} | {p.activation_bytes / GIB:.2f} | "
                     f"{p.largest_tensor_elements:,} |")
    profiles = sum(p.activation_bytes for p in memories)
    lines += ["", f"One instance keeps every profile: weights {weights / GIB:.2f} + profiles {profiles / GIB:.2f} = "
                  f"{(weights + profiles) / GIB:.2f} GiB of its {INSTANCE_BUDGET_BYTES / GIB:.1f} GiB."]
    return "\n".join(lines)
