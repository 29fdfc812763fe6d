"""Offline stand-ins: the rebuilt Qwen2.5 tokenizer and seeded random weights."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer

from mxbai_triton.export.standin import build_qwen25_tokenizer, build_standin


@pytest.fixture(scope="module")
def qwen_tokenizer():
    return build_qwen25_tokenizer()


def test_tokenizer_reproduces_published_qwen2_ids(qwen_tokenizer):
    encode = lambda text: qwen_tokenizer.encode(text, add_special_tokens=False).ids  # noqa: E731
    assert encode("Hello world, 123 héllo") == [9707, 1879, 11, 220, 16, 17, 18, 305, 18503, 385]
    assert encode("What is the capital of France?") == [3838, 374, 279, 6722, 315, 9625, 30]
    assert encode("<|im_end|>\n<|im_start|>assistant\n") == [151645, 198, 151644, 77091, 198]
    assert (encode("1"), encode("0")) == ([16], [15])


def test_tokenizer_has_qwen25_added_tokens_in_order(qwen_tokenizer):
    assert qwen_tokenizer.token_to_id("<|endoftext|>") == 151643
    assert qwen_tokenizer.token_to_id("<|im_start|>") == 151644
    assert qwen_tokenizer.token_to_id("<|file_sep|>") == 151664


def test_tokenizer_normalizes_nfd_to_nfc(qwen_tokenizer):
    assert qwen_tokenizer.encode("cafe\u0301").ids == qwen_tokenizer.encode("caf\u00e9").ids


@pytest.mark.slow
def test_same_seed_gives_same_weights_and_other_seed_differs(tmp_path, tiny_checkpoint):
    again = build_standin(tmp_path / "again", size="tiny", seed=0)
    other = build_standin(tmp_path / "other", size="tiny", seed=1)
    weights = lambda d: (d / "model.safetensors").read_bytes()  # noqa: E731
    assert weights(again) == weights(tiny_checkpoint)
    assert weights(other) != weights(tiny_checkpoint)


def test_standin_has_real_vocab_positions_and_tied_embeddings(tiny_checkpoint):
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert (config["vocab_size"], config["max_position_embeddings"], config["tie_word_embeddings"]) == (151936, 32768, True)
    assert (config["hidden_size"], config["num_hidden_layers"]) == (64, 2)
    assert Tokenizer.from_file(str(tiny_checkpoint / "tokenizer.json")).get_vocab_size() == 151665


def test_unknown_size_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown size 'huge'"):
        build_standin(tmp_path, size="huge")
