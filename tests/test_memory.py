"""The GPU memory model: weights + every TensorRT profile of every known model fit one instance's budget, no tensor
reaches 2^31, fp32's unfused attention does not fit, and the budget check refuses what TensorRT reports over it."""

from __future__ import annotations

import pytest

from mxbai_triton.core.memory import (
    ARCHITECTURES,
    GIB,
    INSTANCE_BUDGET_BYTES,
    MAX_TENSOR_ELEMENTS,
    Architecture,
    OverBudget,
    activation_bytes_per_token,
    check_instance_budget,
    deployment_shape,
    memory_table,
    profile_memory,
    weight_bytes,
)
from mxbai_triton.core.model import BASE_V2, LARGE_V2
from mxbai_triton.core.serving import ServingLimits

KNOWN = [BASE_V2, LARGE_V2]


def engine_bytes(ranges, rows: int, arch: Architecture, dtype: str) -> int:
    """Weights plus the SUM of every profile's activations: what one instance keeps.

    Triton's tensorrt backend creates one execution context per profile listed in the instance
    group and pins each to its profile (tensorrt_backend src/instance_state.cc:2153); with
    `execution_context_allocation_strategy: ON_PROFILE_CHANGE` a context allocates for its profile
    when that profile is set (TensorRT include/NvInferRuntime.h:2930) and keeps it, so every
    profile's memory is held at once. (STATIC would hold the largest profile's in every context.)
    """
    return weight_bytes(arch, dtype) + sum(p.activation_bytes for p in profile_memory(ranges, rows, arch, dtype))


def dispatch_bytes(max_batch_tokens: int, arch: Architecture, dtype: str) -> int:
    """Activations of one dispatched sub-batch at the dispatch's token budget."""
    return max_batch_tokens * activation_bytes_per_token(arch, dtype)


def _profiles(spec, dtype):
    """The memory of each default profile of `spec` (its engine profiles at its serving max_batch_size)."""
    ranges, rows = deployment_shape(spec)
    return profile_memory(ranges, rows, ARCHITECTURES[spec.name], dtype)


def _engine_bytes(spec, dtype):
    return engine_bytes(*deployment_shape(spec), ARCHITECTURES[spec.name], dtype)


@pytest.mark.parametrize("spec", KNOWN, ids=lambda s: s.name)
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_the_weights_and_every_profile_together_fit_one_instance_of_two_on_an_80_gb_gpu(spec, dtype):
    assert _engine_bytes(spec, dtype) <= INSTANCE_BUDGET_BYTES


def test_an_instance_keeps_the_sum_of_its_profiles_not_the_largest():
    arch = ARCHITECTURES[BASE_V2.name]
    profiles = [p.activation_bytes for p in _profiles(BASE_V2, "fp16")]
    assert len(profiles) == 3
    assert _engine_bytes(BASE_V2, "fp16") == weight_bytes(arch, "fp16") + sum(profiles)


@pytest.mark.parametrize("spec", KNOWN, ids=lambda s: s.name)
def test_fp32_attention_runs_unfused_and_its_scores_alone_exceed_the_budget(spec):
    arch = ARCHITECTURES[spec.name]
    longest = _profiles(spec, "fp32")[-1]
    scores = longest.rows * arch.heads * longest.seq_max**2
    assert longest.largest_tensor_elements == scores
    assert longest.activation_bytes > 4 * scores > INSTANCE_BUDGET_BYTES


def test_the_budget_check_passes_tensorrts_figures_within_the_budget_and_returns_the_sum():
    # What `engine.get_device_memory_size_for_profile_v2(i)` could report for base-v2's three profiles.
    assert check_instance_budget(GIB, [GIB // 2, 3 * GIB, 24 * GIB], source="TensorRT", dtype="fp16") == 28 * GIB + GIB // 2


def test_the_budget_check_refuses_an_engine_whose_profiles_together_exceed_the_budget():
    # Each profile fits alone; the three contexts of one instance do not.
    with pytest.raises(OverBudget, match=r"^TensorRT: weights 1.00 GiB \+ profiles 2.00 \+ 10.00 \+ 30.00 GiB = 43.00 GiB, "
                                         r"over one instance's budget of 36.5 GiB \(.*\(--profiles MIN:OPT:MAX"):
        check_instance_budget(GIB, [2 * GIB, 10 * GIB, 30 * GIB], source="TensorRT", dtype="fp16")


def test_the_budget_check_tells_an_fp32_engine_to_export_fp16_instead():
    with pytest.raises(OverBudget, match=r"fp32 attention runs unfused .* --dtype fp16"):
        check_instance_budget(2 * GIB, [40 * GIB], source="the memory model", dtype="fp32")


@pytest.mark.parametrize("spec", KNOWN, ids=lambda s: s.name)
def test_no_tensor_reaches_two_to_the_31_elements_at_any_profile_max_shape(spec):
    for profile in _profiles(spec, "fp16"):
        assert profile.largest_tensor_elements < MAX_TENSOR_ELEMENTS, profile


@pytest.mark.parametrize("spec", KNOWN, ids=lambda s: s.name)
def test_profiles_cover_every_padded_length_at_the_full_batch(spec):
    profiles = _profiles(spec, "fp16")
    assert profiles[0].seq_min == 1 and profiles[-1].seq_max == spec.max_sequence_length
    assert all(a.seq_max + 1 == b.seq_min for a, b in zip(profiles, profiles[1:]))
    assert all(p.rows == ServingLimits.for_model(spec).max_batch_size for p in profiles)


@pytest.mark.parametrize("spec", KNOWN, ids=lambda s: s.name)
def test_a_dispatched_sub_batch_needs_no_more_than_the_largest_profile(spec):
    arch = ARCHITECTURES[spec.name]
    limits = ServingLimits.for_model(spec)
    assert dispatch_bytes(limits.max_batch_tokens, arch, "fp16") <= max(p.activation_bytes for p in _profiles(spec, "fp16"))


def test_parameter_counts_are_the_published_model_sizes():
    assert round(ARCHITECTURES["mxbai-rerank-base-v2"].parameters / 1e6) == 494
    assert round(ARCHITECTURES["mxbai-rerank-large-v2"].parameters / 1e8) == 15


def test_activation_bytes_per_token_add_up_every_intermediate_of_a_layer():
    arch = Architecture(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=1000)
    # residual 3*4*64, norms 2*(4*64+2*64), qkv 2*(64+64)+4*(64+32)+2*(64+32)+2*2*32 (K/V zeroed at pads),
    # attention 2*64+8*4+2*64, mlp 3*2*128+2*64
    assert activation_bytes_per_token(arch, "fp16") == 768 + 768 + 960 + 288 + 896
    assert weight_bytes(arch, "fp32") == 2 * weight_bytes(arch, "fp16")


def test_architecture_reads_a_checkpoint_config(tiny_checkpoint):
    arch = Architecture.from_checkpoint(tiny_checkpoint)
    assert (arch.hidden, arch.layers, arch.heads, arch.kv_heads) == (64, 2, 4, 2)


def test_memory_table_lists_every_profile_and_the_instance_total():
    table = memory_table(BASE_V2, ARCHITECTURES[BASE_V2.name], "fp16")
    assert table.count("\n| ") == len(deployment_shape(BASE_V2)[0]) + 1
    assert table.endswith(f"= {_engine_bytes(BASE_V2, 'fp16') / GIB:.2f} GiB of its 36.5 GiB.")
