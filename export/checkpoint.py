"""A checkpoint (hub id or local dir): Qwen2 weights from safetensors only, its tokenizer files, one-line errors when unreachable."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from urllib.parse import urlparse

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


class CheckpointError(RuntimeError):
    """The checkpoint cannot be had here (hub unreachable and not cached); the message says what to do."""


def _hub_reachable(timeout: float = 3.0) -> bool:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout):
            return True
    except OSError:
        return False


def ensure_reachable(source: str) -> None:
    """Raise CheckpointError at once, instead of minutes of hub retries, when `source` can be had from nowhere."""
    if Path(source).is_dir():
        return
    from huggingface_hub import constants, try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(source, "config.json"), str)
    if cached or _hub_reachable():
        return
    raise CheckpointError(
        f"cannot load {source!r}: it is not a local directory, not in the Hugging Face cache, and "
        f"{constants.ENDPOINT} is unreachable from here. Pass a local checkpoint directory instead "
        "(MODEL=/path/to/checkpoint), set HF_ENDPOINT to a reachable mirror, or download it where the hub is "
        "reachable (`huggingface-cli download ID`) and copy the cache here (HF_HUB_OFFLINE=1 then reads it)"
    )


def load_causal_lm(source: str):
    """Qwen2ForCausalLM in fp32 from safetensors only, never running remote code."""
    import torch
    from transformers import AutoConfig, Qwen2ForCausalLM

    local = Path(source)
    if local.is_dir() and not any(local.glob("*.safetensors")):
        pickles = sorted(p.name for p in local.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        raise ValueError(
            f"{source}: no *.safetensors weights" + (f" (only {', '.join(pickles)})" if pickles else "")
            + "; export loads safetensors only, because pickle checkpoints can run code when loaded"
        )
    ensure_reachable(source)
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=False)
    except OSError as error:
        raise CheckpointError(f"cannot load the config of {source!r}: {str(error).splitlines()[0]}") from None
    if config.model_type != "qwen2":
        raise ValueError(f"{source}: model_type {config.model_type!r}, expected 'qwen2' (mxbai-rerank-v2)")
    try:
        return Qwen2ForCausalLM.from_pretrained(
            source, dtype=torch.float32, use_safetensors=True, trust_remote_code=False
        ).eval()
    except OSError as error:
        raise ValueError(f"{source}: cannot load safetensors weights ({error})") from None


def copy_tokenizer(source: str, out_dir: Path) -> None:
    """The checkpoint's tokenizer files into `out_dir` (copied from a local dir, saved from the hub)."""
    local = Path(source)
    if local.is_dir() and (local / "tokenizer.json").is_file():
        for name in TOKENIZER_FILES:
            if (local / name).is_file():
                shutil.copy2(local / name, out_dir / name)
        return
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(source, trust_remote_code=False).save_pretrained(out_dir)
