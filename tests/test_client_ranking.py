"""Client-side rules, independent of any server: order, ties, top_k, normalisation, what is refused before sending."""

from __future__ import annotations

import numpy as np
import pytest

from mxbai_triton.client import NO_RETRY, RerankClient, RerankError, rank_results, sigmoid_normalize


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


REFUSED_BY_THE_CLIENT = {
    "missing_query": ((None, ["d"]), {}, TypeError, "'query' must be a str, got NoneType"),
    "document_as_bytes": (("q", ["ok", b"raw"]), {}, TypeError, r"'documents\[1\]' must be a str, got bytes"),
    "document_as_int": (("q", ["ok", 3]), {}, TypeError, r"'documents\[1\]' must be a str, got int"),
    "documents_as_a_matrix": (("q", [["a"], ["b"]]), {}, TypeError, r"'documents\[0\]' must be a str, got list"),
    "documents_as_one_string": (("q", "one document"), {}, TypeError, "'documents' must be a sequence of str, got str"),
    "lone_surrogate_in_document": (
        ("q", ["ok", "bad \udcff"]), {}, ValueError, r"'documents\[1\]' has a lone surrogate at character 4"),
    "lone_surrogate_in_query": (("\ud800", ["d"]), {}, ValueError, "'query' has a lone surrogate at character 0"),
    "instruction_as_list": (("q", ["d"]), {"instruction": ["x"]}, TypeError, "'instruction' must be a str or None"),
    "priority_out_of_range": (("q", ["d"]), {"priority": 3}, ValueError,
                              r"priority must be 0 \(the server decides by size\), 1 \(interactive\) or 2 \(bulk\), got 3"),
}


def _unreachable_client() -> RerankClient:
    # Nothing listens there: a request that left would fail with RerankError, not the expected error.
    from mxbai_triton.processes import free_port

    return RerankClient(f"127.0.0.1:{free_port()}", model="reranker", retry=NO_RETRY)


@pytest.mark.parametrize("case", list(REFUSED_BY_THE_CLIENT))
def test_client_refuses_what_cannot_be_sent_before_any_request(case):
    args, kwargs, error, message = REFUSED_BY_THE_CLIENT[case]
    with _unreachable_client() as client:
        with pytest.raises(error, match=message):
            client.rank(*args, **kwargs)
        assert client.stats.requests == 0
        assert not issubclass(error, RerankError)


def test_client_returns_no_results_for_no_documents_without_a_request():
    with _unreachable_client() as client:
        assert client.rank("q", []) == []
        assert client.stats.requests == 0


def test_a_call_carries_its_deadline_as_triton_timeout_and_grpc_deadline_with_priority_and_truncate():
    from mxbai_triton.client.transport import Call
    from mxbai_triton.core.deadline import Deadline

    frozen = Deadline(101.5, clock=lambda: 100.0)  # 1.5 s left, whenever the options are read
    assert Call("rr_tokenizer", 2, frozen).options(grpc=True) == {
        "timeout": 1_500_000, "priority": 2, "parameters": {"dispatch_priority": 2}, "client_timeout": 1.5}
    assert Call("rr_tokenizer", 0, frozen, "NONE").options(grpc=False) == {"timeout": 1_500_000,
                                                                         "parameters": {"truncate": "NONE"}}
    assert Call("rr_tokenizer").options(grpc=True) == {"timeout": 0}  # no deadline: none sent, none kept
    with pytest.raises(ValueError, match="truncate must be one of END, NONE"):
        Call("rr_tokenizer", truncate="MIDDLE")


def test_an_ensemble_config_without_the_dispatch_step_or_the_prompt_cap_is_not_ours():
    from mxbai_triton.client.transport import limits_from_config

    ours = {"name": "rr", "parameters": {"max_documents_per_request": {"string_value": "1000"},
                                         "estimated_max": {"string_value": "9.0"},
                                         "max_prompt_tokens": {"string_value": "8271"},
                                         "dispatch_model": {"string_value": "rr_tokenizer"}}}
    assert limits_from_config(ours).dispatch_model == "rr_tokenizer"
    for missing in ("dispatch_model", "max_prompt_tokens"):
        older = {**ours, "parameters": {k: v for k, v in ours["parameters"].items() if k != missing}}
        with pytest.raises(RerankError, match=rf"^model 'rr' is not an mxbai-triton ensemble \(no parameter '{missing}'\)$"):
            limits_from_config(older)
