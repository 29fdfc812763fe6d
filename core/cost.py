"""What one scorer execution costs on each kind of target (the model's FLOPs over rates measured on a CPU or read
from a GPU's roofline), and how long a bulk request's sub-batch may take there."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .memory import ARCHITECTURES, Architecture
from .serving import ServingLimits, SubBatchCost


def linear_flops_per_token(arch: Architecture) -> float:
    """Matmul FLOPs of the projections and the MLP for one token: 2 per weight."""
    kv = arch.kv_heads * arch.head_dim
    return 2 * arch.layers * (2 * arch.hidden * arch.hidden + 2 * arch.hidden * kv + 3 * arch.hidden * arch.intermediate)


def attention_flops_per_cell(arch: Architecture) -> float:
    """FLOPs of QK^T and PV per (query, key) cell of a row, causal: half of 4 x hidden per layer."""
    return 2 * arch.layers * arch.hidden


def flops(arch: Architecture, rows: int, length: int) -> float:
    """Matmul FLOPs of `rows` rows of `length` tokens (the one formula for GPU figures and the cost model)."""
    return rows * length * (linear_flops_per_token(arch) + length * attention_flops_per_cell(arch))


@dataclass(frozen=True)
class TargetRates:
    """How fast one kind of scorer runs, and the time a bulk sub-batch may take on it.

    Attention's rate is per causal FLOP: an unfused CPU kernel also computes the masked half, and its
    softmax is memory-bound, so its rate differs from the matmuls'.
    """

    linear_flop_per_s: float
    attention_flop_per_s: float
    seconds_per_execution: float
    bulk_sub_batch_seconds: float
    source: str

    def cost(self, arch: Architecture) -> SubBatchCost:
        """The cost model of `arch` on this kind of target (4 significant digits: an estimate)."""
        return SubBatchCost(*(float(f"{x:.4g}") for x in (
            self.seconds_per_execution, linear_flops_per_token(arch) / self.linear_flop_per_s,
            attention_flops_per_cell(arch) / self.attention_flop_per_s)))


# Per kind of scorer. "cpu" (portable, onnx on CPU instances): fitted by `mxbai-triton perf cost` from the
# portable scorer's own executions (Triton statistics) of the small stand-in on 21 shapes from 1 x 64
# to 1 x 8272, fp32, ONNX Runtime 1.32, AMD EPYC, 2 cores, AVX2 (perf/NOTES.md "Bounded bulk turns"). A CPU with
# AVX-512 or AMX runs faster: the estimates then overstate times, sub-batches come out smaller than
# the budget allows (fit them there and put the coefficients in serving.json). "gpu" (trt, onnx on
# GPU instances): not measured; H100/H200 bf16 dense peak 790 TFLOP/s, half of it reached, and ~1 ms
# per execution (BLS hop and launches); the budget is ~1/3 of a 32k-token base-v2 sub-batch (~60 ms).
TARGET_RATES = {
    "cpu": TargetRates(linear_flop_per_s=152e9, attention_flop_per_s=77e9, seconds_per_execution=0.002,
                       bulk_sub_batch_seconds=0.4, source="fitted: small stand-in, portable, AMD EPYC 2 cores AVX2 fp32"),
    "gpu": TargetRates(linear_flop_per_s=395e12, attention_flop_per_s=395e12, seconds_per_execution=0.001,
                       bulk_sub_batch_seconds=0.02, source="roofline: H100/H200 bf16, 50 % of 790 TFLOP/s"),
}


def target_kind(target: str, instance_kind: str = "gpu") -> str:
    """"gpu" for the trt target and onnx on GPU instances, else "cpu"."""
    return "gpu" if target == "trt" or (target == "onnx" and instance_kind == "gpu") else "cpu"


def architecture_of(model_name: str, export_dir: str | Path | None = None) -> Architecture | None:
    """The shape of an export (its config.json) or of a known model; None when neither tells."""
    config = Path(export_dir) / "config.json" if export_dir else None
    if config is not None and config.is_file() and "hidden_size" in json.loads(config.read_text(encoding="utf-8")):
        return Architecture.from_checkpoint(export_dir)
    return ARCHITECTURES.get(model_name)


def with_target_costs(limits: ServingLimits, arch: Architecture | None, kind: str) -> ServingLimits:
    """`limits` with the kind's cost model and bulk budget where they are None.

    A model of unknown shape gets no cost model and budget 0: its bulk plans stay as interactive ones.
    """
    rates = TARGET_RATES[kind]
    cost = limits.sub_batch_cost or (arch and rates.cost(arch))
    budget = limits.bulk_sub_batch_seconds
    if budget is None:
        budget = rates.bulk_sub_batch_seconds if cost else 0.0
    return limits.with_overrides(sub_batch_cost=cost, bulk_sub_batch_seconds=budget)
