"""The tokenizer model's framework-free core: padding policy per request, text decoding errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from mxbai_triton.export.spec import ModelSpec
from mxbai_triton.model_repository.tokenizer_backend import RequestError, TokenizerCore, decode_text


def _core(tiny_export, tmp_path, **overrides) -> TokenizerCore:
    shutil.copy(tiny_export / "tokenizer.json", tmp_path / "tokenizer.json")
    ModelSpec.load(tiny_export).with_overrides(**overrides).save(tmp_path)
    return TokenizerCore(tmp_path)


def _request(query: str, documents: list[str]):
    return (np.array([query.encode()], dtype=object), np.array([d.encode() for d in documents], dtype=object), None)


def test_each_request_is_padded_to_its_own_smallest_bucket(tiny_export, tmp_path):
    core = _core(tiny_export, tmp_path)
    short, long = core.tokenize([core.parse(*_request("q", ["a"])), core.parse(*_request("q", ["word " * 150]))])
    assert short[0].shape == (1, 128) and long[0].shape == (1, 256)
    assert short[1][0, -1] == 1 and short[1][0, 0] == 0  # left padding


def test_without_buckets_requests_are_padded_to_a_multiple_of_8(tiny_export, tmp_path):
    core = _core(tiny_export, tmp_path, bucket_bounds=())
    (ids, mask), = core.tokenize([core.parse(*_request("q", ["a", "word " * 150]))])
    longest = int(mask.sum(axis=1).max())
    assert ids.shape[1] == -(-longest // 8) * 8


def test_strings_arrive_decoded_in_order():
    assert decode_text(np.array(["é".encode(), b"x"], dtype=object), "documents") == ["é", "x"]


def test_invalid_utf8_names_the_input_and_position():
    with pytest.raises(RequestError, match=r"'documents\[1\]' is not valid UTF-8"):
        decode_text(np.array([b"ok", b"\xff"], dtype=object), "documents")
