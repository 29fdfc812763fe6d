"""The dispatch planner: length-sorted sub-batches within the row, token and attention limits, little padding;
bulk plans within a cost budget."""

from __future__ import annotations

import numpy as np
import pytest

from mxbai_triton.core.dispatch import DispatchLimits, SchedulingPolicy, plan_sub_batches
from mxbai_triton.core.model import BASE_V2, LARGE_V2
from mxbai_triton.core.serving import ServingLimits, SubBatchCost
from mxbai_triton.core.wire import PRIORITY_BULK, PRIORITY_INTERACTIVE
from mxbai_triton.perf.workload import LENGTH_SIGMAS, mixed_lengths

TEMPLATE_AND_QUERY = 90


def _limits(**changes) -> DispatchLimits:
    base = dict(max_rows=64, max_tokens=32768, max_attention_cells=0, overhead_tokens=256, multiple_of=8, buckets=())
    return DispatchLimits(**{**base, **changes})


def _computed_over_real(lengths: np.ndarray, limits: DispatchLimits) -> float:
    batches = plan_sub_batches(lengths, limits)
    computed = sum(len(rows) * int(limits.padded(lengths[rows].max(keepdims=True))[0]) for rows in batches)
    return computed / lengths.sum()


def test_every_row_is_in_exactly_one_sub_batch():
    lengths = mixed_lengths(1000, 1.0, seed=3) + TEMPLATE_AND_QUERY
    batches = plan_sub_batches(lengths, _limits())
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))


def test_sub_batches_hold_length_neighbours_shortest_first():
    lengths = np.array([500, 20, 300, 21, 8000, 22])
    batches = plan_sub_batches(lengths, _limits())
    maxima = [int(lengths[rows].max()) for rows in batches]
    assert maxima == sorted(maxima)
    assert [rows.tolist() for rows in batches if 4 in rows] == [[4]]  # the 8k outlier alone


def test_sub_batches_respect_rows_tokens_and_attention_cells():
    lengths = mixed_lengths(500, 1.0, seed=5) + TEMPLATE_AND_QUERY
    limits = _limits(max_rows=16, max_tokens=8272, max_attention_cells=1 << 22)
    for rows in plan_sub_batches(lengths, limits):
        width = int(limits.padded(lengths[rows].max(keepdims=True))[0])
        assert len(rows) <= 16
        assert len(rows) == 1 or (len(rows) * width <= 8272 and len(rows) * width * width <= 1 << 22)


def test_a_row_longer_than_the_cell_cap_still_gets_a_sub_batch_of_its_own():
    limits = _limits(max_attention_cells=1 << 20)
    assert [b.tolist() for b in plan_sub_batches(np.array([5000, 10]), limits)] == [[1], [0]]


def test_no_rows_give_no_sub_batches():
    assert plan_sub_batches(np.array([], dtype=np.int64), _limits()) == []


@pytest.mark.parametrize("label", list(LENGTH_SIGMAS))
def test_multiple_of_8_padding_computes_at_most_1_15_times_the_real_tokens(label):
    lengths = mixed_lengths(100, LENGTH_SIGMAS[label], seed=11) + TEMPLATE_AND_QUERY
    assert _computed_over_real(lengths, _limits()) <= 1.15


@pytest.mark.parametrize("label", list(LENGTH_SIGMAS))
def test_gpu_buckets_compute_at_most_1_3_times_the_real_tokens(label):
    lengths = mixed_lengths(100, LENGTH_SIGMAS[label], seed=11) + TEMPLATE_AND_QUERY
    assert _computed_over_real(lengths, DispatchLimits.of(BASE_V2, ServingLimits.for_model(BASE_V2))) <= 1.3


def test_bucket_padding_uses_the_smallest_bucket_that_fits():
    limits = _limits(buckets=(64, 128, 192))
    assert limits.padded(np.array([1, 64, 65, 192])).tolist() == [64, 64, 128, 192]
    with pytest.raises(ValueError, match="exceeds the largest bucket 192"):
        limits.padded(np.array([193]))


def test_extra_sub_batch_overhead_merges_more_rows():
    lengths = mixed_lengths(200, 0.6, seed=2) + TEMPLATE_AND_QUERY
    cheap = len(plan_sub_batches(lengths, _limits(overhead_tokens=0)))
    dear = len(plan_sub_batches(lengths, _limits(overhead_tokens=4096)))
    assert dear < cheap


def test_requests_over_the_interactive_budget_or_marked_by_their_caller_are_bulk():
    policy = SchedulingPolicy(interactive_max_tokens=1000, bulk_in_flight=1)
    assert [policy.level(tokens, requested) for tokens, requested in
            [(1000, 0), (1001, 0), (10, 2), (10, 1), (5000, 1)]] == [1, 2, 2, 1, 2]


def test_bulk_requests_keep_a_window_of_sub_batches_and_interactive_ones_send_all():
    policy = SchedulingPolicy(interactive_max_tokens=1000, bulk_in_flight=2)
    assert [policy.in_flight(1, 7), policy.in_flight(2, 7), policy.in_flight(2, 1)] == [7, 2, 1]


def _bulk_case(size: str, kind: str, model, sigma: float, seed: int):
    """Lengths of a 1000-document request (lognormal, three 8k outliers) and the bulk limits of `size` on `kind`."""
    from mxbai_triton.core.cost import with_target_costs
    from mxbai_triton.core.memory import SIZES, Architecture

    limits = ServingLimits.for_model(model)
    if kind == "cpu":  # the portable target: multiple-of-8 padding and the unfused attention cap
        limits = limits.with_overrides(bucket_bounds=(), max_attention_cells=1 << 25)
    limits = with_target_costs(limits, Architecture(*SIZES[size]), kind)
    lengths = np.minimum(mixed_lengths(1000, sigma, seed=seed) + TEMPLATE_AND_QUERY, model.max_sequence_length)
    lengths[np.random.default_rng(seed).choice(1000, 3, replace=False)] = model.max_sequence_length
    return lengths, limits


CASES = [("small", "cpu", BASE_V2), ("base", "cpu", BASE_V2), ("base", "gpu", BASE_V2), ("large", "gpu", LARGE_V2)]


@pytest.mark.parametrize("size, kind, model", CASES)
@pytest.mark.parametrize("sigma", [0.6, 1.0])
def test_bulk_sub_batches_stay_within_the_budget_and_within_1_2_times_their_mean_cost(size, kind, model, sigma):
    lengths, limits = _bulk_case(size, kind, model, sigma, seed=3)
    bulk, cost, budget = DispatchLimits.of(model, limits, PRIORITY_BULK), limits.sub_batch_cost, limits.bulk_sub_batch_seconds
    batches = plan_sub_batches(lengths, bulk)
    estimates = np.array([cost.seconds(len(rows), int(bulk.padded(lengths[rows].max(keepdims=True))[0])) for rows in batches])
    several = np.array([len(rows) > 1 for rows in batches])
    # A row is never split: only a row longer than the budget allows (the 8k outliers) goes over it, alone.
    assert not several[estimates > budget].any()
    if several.any():  # base-v2 on a CPU: every row alone is over 0.3 s
        assert estimates[several].max() <= 1.2 * estimates[several].mean()
    # Near-full turns: at most 25 % more sub-batches than the estimated work needs at the budget.
    fits = estimates <= budget
    assert len(batches) <= 1.25 * (np.ceil(estimates[fits].sum() / budget) + (~fits).sum())


@pytest.mark.parametrize("size, kind, model", CASES)
def test_interactive_plans_are_the_plans_without_a_bulk_budget(size, kind, model):
    lengths, limits = _bulk_case(size, kind, model, 0.6, seed=5)
    unbudgeted = limits.with_overrides(bulk_sub_batch_seconds=0.0, sub_batch_cost=None)
    def plan(serving, level=PRIORITY_INTERACTIVE):
        return [rows.tolist() for rows in plan_sub_batches(lengths, DispatchLimits.of(model, serving, level))]

    assert plan(limits) == plan(unbudgeted)
    assert plan(unbudgeted, PRIORITY_BULK) == plan(limits)  # budget 0: bulk requests planned as before bounded turns


def test_a_budget_without_a_cost_model_is_refused():
    with pytest.raises(ValueError, match="a sub-batch budget needs a cost model"):
        _limits(budget_seconds=0.2)


def test_the_cost_model_counts_tokens_attention_cells_and_a_fixed_part_per_execution():
    cost = SubBatchCost(seconds_per_execution=0.002, seconds_per_token=1e-5, seconds_per_attention_cell=1e-8)
    assert cost.seconds(4, 100) == pytest.approx(0.002 + 4 * 100 * 1e-5 + 4 * 100 * 100 * 1e-8)
    assert cost.rows_within(0.2, 100) == int((0.2 - 0.002) / (100 * 1e-5 + 100 * 100 * 1e-8))
    assert cost.rows_within(0.2, 8000) == 1  # one row over the budget still gets a sub-batch
