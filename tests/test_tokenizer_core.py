"""The tokenizer model's framework-free core: sub-batches and their padding, request limits, text decoding errors."""

from __future__ import annotations

import numpy as np
import pytest

from mxbai_triton.core.model import ModelSpec
from mxbai_triton.core.serving import ServingLimits
from mxbai_triton.model_repository.tokenizer_backend import RequestError, TokenizerCore, decode_text


def _core(tiny_tokenizer_dir, tmp_path, **limits) -> TokenizerCore:
    """The core of a tokenizer model folder holding the tiny spec and serving `limits` (the defaults otherwise)."""
    (tmp_path / "tokenizer.json").symlink_to(tiny_tokenizer_dir / "tokenizer.json")  # parsed once, cached
    spec = ModelSpec.load(tiny_tokenizer_dir)
    spec.save(tmp_path)
    ServingLimits.for_model(spec, **limits).save(tmp_path)
    return TokenizerCore(tmp_path)


def _request(query: str, documents: list[str]):
    return (np.array([query.encode()], dtype=object), np.array([d.encode() for d in documents], dtype=object), None)


def test_each_sub_batch_is_padded_to_its_own_smallest_bucket(tiny_tokenizer_dir, tmp_path):
    core = _core(tiny_tokenizer_dir, tmp_path, sub_batch_overhead_tokens=0)  # no reason to merge the two lengths
    plan, = core.plan([core.parse(*_request("q", ["a", "word " * 150]))])
    short, long = plan.batches
    assert short.input_ids.shape == (1, 128) and long.input_ids.shape == (1, 256)
    assert short.rows.tolist() == [0] and long.rows.tolist() == [1]
    assert short.attention_mask[0, 0] == 1 and short.attention_mask[0, -1] == 0  # right padding, as the graph wants


def test_without_buckets_sub_batches_are_padded_to_a_multiple_of_8(tiny_tokenizer_dir, tmp_path):
    core = _core(tiny_tokenizer_dir, tmp_path, bucket_bounds=())
    for batch in core.plan([core.parse(*_request("q", ["a", "word " * 150, "b c"]))])[0].batches:
        longest = int(batch.attention_mask.sum(axis=1).max())
        assert batch.input_ids.shape[1] == -(-longest // 8) * 8


def test_sub_batches_hold_the_reference_rows_of_every_document_once(tiny_tokenizer_dir, tmp_path, preprocessor):
    core = _core(tiny_tokenizer_dir, tmp_path, bucket_bounds=())
    documents = ["short", "word " * 400, "a bit longer text here", "", "word " * 30]
    plan, = core.plan([core.parse(*_request("who?", documents))])
    expected = preprocessor.encode("who?", documents)
    seen = []
    for batch in plan.batches:
        for row, ids, mask in zip(batch.rows, batch.input_ids, batch.attention_mask):
            assert ids[mask.astype(bool)].tolist() == expected[row]
            seen.append(int(row))
    assert sorted(seen) == list(range(len(documents)))


def test_right_padding_puts_every_pad_after_the_real_tokens(tiny_tokenizer_dir, tmp_path):
    core = _core(tiny_tokenizer_dir, tmp_path, bucket_bounds=())
    plan, = core.plan([core.parse(*_request("q", ["a", "b c d"]))])
    batch, = plan.batches
    lengths = batch.attention_mask.sum(axis=1)
    assert all(mask[:n].all() and not mask[n:].any() for mask, n in zip(batch.attention_mask, lengths))


def test_more_documents_than_the_request_limit_are_refused_naming_the_limit(tiny_tokenizer_dir, tmp_path):
    core = _core(tiny_tokenizer_dir, tmp_path, max_documents_per_request=3)
    with pytest.raises(RequestError, match="'documents' has 4 items, more than the per-request limit of 3"):
        core.parse(*_request("q", ["a", "b", "c", "d"]))


def test_strings_arrive_decoded_in_order():
    assert decode_text(np.array(["é".encode(), b"x"], dtype=object), "documents") == ["é", "x"]


def test_invalid_utf8_names_the_input_and_position():
    with pytest.raises(RequestError, match=r"'documents\[1\]' is not valid UTF-8"):
        decode_text(np.array([b"ok", b"\xff"], dtype=object), "documents")
