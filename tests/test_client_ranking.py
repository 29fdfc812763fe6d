"""Client-side ranking rules, independent of any server: order, ties, top_k, normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from mxbai_triton.client import rank_results, sigmoid_normalize


def test_results_sorted_by_score_descending():
    results = rank_results(np.array([0.1, 0.9, 0.5]), ["a", "b", "c"])
    assert [(r.index, r.document) for r in results] == [(1, "b"), (2, "c"), (0, "a")]


def test_ties_keep_input_order():
    results = rank_results(np.array([0.5, 0.7, 0.5, 0.7]), ["a", "b", "c", "d"])
    assert [r.index for r in results] == [1, 3, 0, 2]


def test_top_k_cuts_after_sorting():
    assert [r.index for r in rank_results(np.array([3.0, 1.0, 2.0]), ["a", "b", "c"], top_k=2)] == [0, 2]


def test_top_k_larger_than_list_returns_all():
    assert len(rank_results(np.array([1.0, 2.0]), ["a", "b"], top_k=10)) == 2


def test_top_k_below_one_is_rejected():
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        rank_results(np.array([1.0]), ["a"], top_k=0)


def test_return_documents_false_leaves_documents_out():
    assert all(r.document is None for r in rank_results(np.array([1.0, 2.0]), ["a", "b"], return_documents=False))


def test_sigmoid_normalize_matches_reference():
    from mxbai_rerank.utils import sigmoid_normalize as reference

    scores = np.array([-3.0, 0.0, 4.5, 9.0, 12.0])
    for estimated_max in (9.0, 12.0):
        np.testing.assert_allclose(sigmoid_normalize(scores, estimated_max), reference(scores, estimated_max=estimated_max))
