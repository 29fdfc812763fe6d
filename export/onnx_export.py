"""Checkpoint (hub id or local dir) -> export dir with model.onnx, tokenizer files and spec.json."""

from __future__ import annotations

import shutil
from pathlib import Path

from .progress import Progress
from .spec import ModelSpec, resolve_spec

ONNX_FILENAME = "model.onnx"
# torch writes the weights beside the graph under this name when external data is on.
ONNX_DATA_FILENAME = ONNX_FILENAME + ".data"
# Protobuf's 2 GiB ceiling; below it a single file is simpler to move around.
EXTERNAL_DATA_THRESHOLD_BYTES = 1 << 30
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


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
    config = AutoConfig.from_pretrained(source, trust_remote_code=False)
    if config.model_type != "qwen2":
        raise ValueError(f"{source}: model_type {config.model_type!r}, expected 'qwen2' (mxbai-rerank-v2)")
    try:
        return Qwen2ForCausalLM.from_pretrained(
            source, dtype=torch.float32, use_safetensors=True, trust_remote_code=False
        ).eval()
    except OSError as error:
        raise ValueError(f"{source}: cannot load safetensors weights ({error})") from None


def _copy_tokenizer(source: str, out_dir: Path) -> None:
    local = Path(source)
    if local.is_dir() and (local / "tokenizer.json").is_file():
        for name in TOKENIZER_FILES:
            if (local / name).is_file():
                shutil.copy2(local / name, out_dir / name)
        return
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(source, trust_remote_code=False).save_pretrained(out_dir)


def _check_token_ids(out_dir: Path, spec: ModelSpec) -> None:
    from .preprocess import RerankPreprocessor

    pre = RerankPreprocessor.from_dir(out_dir, spec)
    found = {
        "yes_token_id": pre.token_id(spec.yes_token),
        "no_token_id": pre.token_id(spec.no_token),
        "pad_token_id": pre.token_id("<|endoftext|>"),
    }
    wrong = {k: v for k, v in found.items() if getattr(spec, k) != v}
    if wrong:
        raise ValueError(f"tokenizer disagrees with the spec: {wrong} (spec: {[getattr(spec, k) for k in wrong]})")


def export_onnx(
    model: str,
    out_dir: str | Path,
    *,
    dtype: str = "fp32",
    name: str | None = None,
    opset: int = 23,
    validate: bool = True,
) -> Path:
    """Export the folded-head scorer of `model` to `out_dir/model.onnx` and validate it.

    Args:
        model: "base-v2", "large-v2", a Hugging Face id or a local checkpoint directory.
        out_dir: Export directory (created): model.onnx[.data], tokenizer files, spec.json.
        dtype: Graph compute dtype, "fp32", "fp16" or "bf16" (sensitive ops stay fp32).
        name: Optional model name for the spec (defaults to the checkpoint's).
        opset: ONNX opset; 23 or later, where `scaled_dot_product_attention` becomes the fused `Attention` op.
        validate: Run ONNX Runtime against PyTorch afterwards; raises on failure.

    Returns:
        Path of model.onnx.
    """
    import torch

    from .scorer import FoldedHeadScorer

    if dtype not in ("fp32", "fp16", "bf16"):
        raise ValueError(f"dtype must be fp32, fp16 or bf16, got {dtype!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from .scorer import PADDING_SIDE

    spec = resolve_spec(model, name=name).with_overrides(dtype=dtype, padding_side=PADDING_SIDE)
    progress = Progress(total=4 + int(validate))

    with progress.step(f"loading {spec.source}"):
        causal_lm = load_causal_lm(spec.source)
        _copy_tokenizer(spec.source, out)
        _check_token_ids(out, spec)
        spec.save(out)

    with progress.step(f"tracing the folded-head scorer ({dtype})"):
        scorer = FoldedHeadScorer(causal_lm, spec, compute_dtype=dtype).eval()
        example = (torch.full((2, 16), 9707, dtype=torch.int64), torch.ones((2, 16), dtype=torch.int64))
        batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
        with torch.no_grad():
            program = torch.onnx.export(
                scorer,
                example,
                dynamo=True,
                input_names=[spec.input_ids.name, spec.attention_mask.name],
                output_names=[spec.scores.name],
                dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}),
                opset_version=opset,
                optimize=True,
            )

    path = out / ONNX_FILENAME
    with progress.step(f"writing {path}"):
        for stale in (path, out / ONNX_DATA_FILENAME):
            stale.unlink(missing_ok=True)
        weight_bytes = sum(p.numel() * p.element_size() for p in scorer.parameters())
        program.save(str(path), external_data=weight_bytes > EXTERNAL_DATA_THRESHOLD_BYTES)

    with progress.step("checking the graph's names and dynamic axes"):
        from .validate import check_signature

        check_signature(path, spec)

    if validate:
        with progress.step("validating ONNX Runtime against PyTorch"):
            from .validate import validate_export

            # The scorer cast the model's weights in place: compare against a fresh fp32 copy.
            reference = causal_lm if dtype == "fp32" else load_causal_lm(spec.source)
            validate_export(out, causal_lm=reference, fallback=scorer)
    return path
