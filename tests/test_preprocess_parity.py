"""Token ids and padding equal mxbai-rerank's `MxbaiRerankV2.prepare_inputs`, case by case."""

from __future__ import annotations

import numpy as np
import pytest

from mxbai_triton.core.preprocess import RerankPreprocessor, pad_sequences, padded_length
from tests.cases import PARITY_CASES
from tests.reference import reference_scores


def _oracle_rows(oracle, query, documents, instruction, max_length):
    saved = oracle.max_length
    try:
        if max_length is not None:
            oracle.max_length = max_length
        batch = oracle.prepare_inputs([query] * len(documents), documents, instruction=instruction)
    finally:
        oracle.max_length = saved
    return batch


@pytest.mark.parametrize("case", PARITY_CASES, ids=[c[0] for c in PARITY_CASES])
def test_token_ids_match_reference(case, oracle, tiny_tokenizer_dir):
    _, query, documents, instruction, max_length = case
    ours = RerankPreprocessor.from_dir(tiny_tokenizer_dir, max_length=max_length).encode(query, documents, instruction=instruction)
    batch = _oracle_rows(oracle, query, documents, instruction, max_length)
    expected = [row[mask.bool()].tolist() for row, mask in zip(batch["input_ids"], batch["attention_mask"])]
    assert ours == expected


DEFAULT_LENGTH_CASES = [c for c in PARITY_CASES if c[4] is None]


@pytest.mark.parametrize("case", DEFAULT_LENGTH_CASES, ids=[c[0] for c in DEFAULT_LENGTH_CASES])
def test_left_padding_matches_reference(case, oracle, preprocessor):
    _, query, documents, instruction, _ = case
    sequences = preprocessor.encode(query, documents, instruction=instruction)
    ids, mask = pad_sequences(sequences, padded_length(max(map(len, sequences))), preprocessor.spec.pad_token_id, "left")
    batch = _oracle_rows(oracle, query, documents, instruction, None)
    np.testing.assert_array_equal(ids, batch["input_ids"].numpy())
    np.testing.assert_array_equal(mask, batch["attention_mask"].numpy())


def test_template_length_matches_reference(oracle, preprocessor):
    assert preprocessor.predefined_length == oracle.predefined_length == 79


def test_pairwise_batch_matches_reference_for_mixed_queries(oracle, preprocessor):
    queries = ["first query", "second query", "first query"]
    documents = ["alpha", "beta", "gamma"]
    batch = oracle.prepare_inputs(queries, documents)
    expected = [row[mask.bool()].tolist() for row, mask in zip(batch["input_ids"], batch["attention_mask"])]
    assert preprocessor.encode_batch(queries, documents) == expected


def test_padded_length_picks_smallest_fitting_bucket():
    assert padded_length(65, buckets=(64, 128, 192)) == 128
    assert padded_length(64, buckets=(64, 128, 192)) == 64


def test_padded_length_rejects_sequence_beyond_last_bucket():
    with pytest.raises(ValueError, match="exceeds the largest bucket 192"):
        padded_length(193, buckets=(64, 128, 192))


def test_max_length_below_one_is_rejected(tiny_tokenizer_dir):
    with pytest.raises(ValueError, match="max_length must be >= 1"):
        RerankPreprocessor.from_dir(tiny_tokenizer_dir, max_length=0)


@pytest.mark.parametrize("case", DEFAULT_LENGTH_CASES, ids=[c[0] for c in DEFAULT_LENGTH_CASES])
def test_array_padding_of_any_row_subset_equals_padding_the_reference_rows(case, preprocessor):
    _, query, documents, instruction, _ = case
    encoded, = preprocessor.encode_arrays([(query, documents, instruction)])
    rows = np.arange(len(documents))[::-1][::2]  # a subset, out of order
    sequences = [preprocessor.encode(query, documents, instruction=instruction)[i] for i in rows]
    length = padded_length(max(map(len, sequences)))
    expected_ids, expected_mask = pad_sequences(sequences, length, preprocessor.spec.pad_token_id, "left")
    ids, mask = encoded.padded(rows, length, pad_id=preprocessor.spec.pad_token_id, side="left")
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(mask, expected_mask)
    right_ids, right_mask = encoded.padded(rows, length, pad_id=preprocessor.spec.pad_token_id, side="right")
    for row, ids_row, mask_row in zip(sequences, right_ids, right_mask):
        assert ids_row[: len(row)].tolist() == row and mask_row.sum() == len(row) and mask_row[: len(row)].all()
        assert (ids_row[len(row):] == preprocessor.spec.pad_token_id).all()


def test_last_position_reference_equals_the_reference_predict(oracle):
    """The helper the long cases use is the reference itself, only cheaper."""
    query, documents = "who?", ["Harper Lee wrote it.", "", "Stock markets fell sharply today."]
    np.testing.assert_allclose(
        reference_scores(oracle, query, documents, "be brief"),
        oracle.predict([query] * 3, documents, instruction="be brief").numpy(), atol=1e-6, rtol=0,
    )
