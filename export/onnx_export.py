"""Checkpoint (hub id or local dir) -> export dir with model.onnx, tokenizer files, config.json and spec.json."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from mxbai_triton.core.model import ONNX_DATA_FILENAME, ONNX_FILENAME, SPEC_FILENAME, ModelSpec, resolve_spec
from mxbai_triton.noise import quiet_exporter

from .checkpoint import TOKENIZER_FILES, copy_tokenizer, ensure_reachable, load_causal_lm
from .progress import Progress
from .validate import check_signature, validate_export

__all__ = ["ONNX_DATA_FILENAME", "ONNX_FILENAME", "ensure_export", "export_onnx", "load_causal_lm"]

log = logging.getLogger(__name__)
# Protobuf's 2 GiB ceiling; below it a single file is simpler to move around.
EXTERNAL_DATA_THRESHOLD_BYTES = 1 << 30


def _check_token_ids(out_dir: Path, spec: ModelSpec) -> None:
    from mxbai_triton.core.preprocess import RerankPreprocessor

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
        out_dir: Export directory (created): model.onnx[.data], tokenizer files, config.json, spec.json.
        dtype: Graph compute dtype, "fp32", "fp16" or "bf16" (sensitive ops stay fp32).
        name: Optional model name for the spec (defaults to the checkpoint's).
        opset: ONNX opset; 23 or later, where `scaled_dot_product_attention` becomes the fused `Attention` op.
        validate: Run ONNX Runtime against PyTorch afterwards; raises on failure.

    Returns:
        Path of model.onnx.
    """
    if dtype not in ("fp32", "fp16", "bf16"):
        raise ValueError(f"dtype must be fp32, fp16 or bf16, got {dtype!r}")
    ensure_reachable(resolve_spec(model).source)  # before torch loads: an unreachable hub fails in a second
    final = Path(out_dir)
    _check_replaceable(final)
    # Written into a sibling folder and renamed at the end: an export is whole or absent, never half there.
    out = final.parent / f".{final.name}.partial-{os.getpid()}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    try:
        _export_into(out, final, model, dtype=dtype, name=name, opset=opset, validate=validate)
        _replace(out, final)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return final / ONNX_FILENAME


# What an export directory holds: another file in it means it is not one, and is never replaced.
EXPORT_FILES = frozenset({ONNX_FILENAME, ONNX_DATA_FILENAME, SPEC_FILENAME, "config.json", *TOKENIZER_FILES})


def _check_replaceable(final: Path) -> None:
    if final.exists() and not final.is_dir():
        raise NotADirectoryError(f"{final} is a file, not an export directory")
    others = sorted(p.name for p in final.iterdir() if p.name not in EXPORT_FILES) if final.is_dir() else []
    if others:
        raise ValueError(f"refusing to replace {final}: it holds files an export does not write ({', '.join(others[:5])}); "
                         "choose an empty or new --out")


def _replace(staged: Path, final: Path) -> None:
    """Move the finished export into place (the old one, if any, out of the way first, then removed)."""
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists():
        final.rename(old)
    staged.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _export_into(out: Path, final: Path, model: str, *, dtype: str, name: str | None, opset: int, validate: bool) -> None:
    """The export of `model` written into `out` (progress names `final`, where it will be)."""
    import torch

    from .scorer import PADDING_SIDE, FoldedHeadScorer

    spec = resolve_spec(model, name=name).with_overrides(dtype=dtype, padding_side=PADDING_SIDE)
    progress = Progress(total=4 + int(validate))

    with progress.step(f"loading {spec.source}"):
        causal_lm = load_causal_lm(spec.source)
        copy_tokenizer(spec.source, out)
        _check_token_ids(out, spec)
        spec.save(out)
        # The model's shape numbers, beside the graph as in optimum's exports: build-engine's memory estimate reads them.
        causal_lm.config.to_json_file(out / "config.json")

    with progress.step(f"tracing the folded-head scorer ({dtype})"):
        scorer = FoldedHeadScorer(causal_lm, spec, compute_dtype=dtype).eval()
        example = (torch.full((2, 16), 9707, dtype=torch.int64), torch.ones((2, 16), dtype=torch.int64))
        batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
        verbose = log.isEnabledFor(logging.DEBUG)
        with torch.no_grad(), quiet_exporter(verbose):
            program = torch.onnx.export(
                scorer,
                example,
                dynamo=True,
                input_names=[spec.input_ids.name, spec.attention_mask.name],
                output_names=[spec.scores.name],
                dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}),
                opset_version=opset,
                optimize=True,
                verbose=verbose,  # None prints the exporter's progress lines; ours say it in one line per step
            )

    path = out / ONNX_FILENAME
    with progress.step(f"writing {final / ONNX_FILENAME}"):
        weight_bytes = sum(p.numel() * p.element_size() for p in scorer.parameters())
        program.save(str(path), external_data=weight_bytes > EXTERNAL_DATA_THRESHOLD_BYTES)

    with progress.step("checking the graph's names and dynamic axes"):
        check_signature(path, spec)

    if validate:
        with progress.step("validating ONNX Runtime against PyTorch"):
            # The scorer cast the model's weights in place: compare against a fresh fp32 copy.
            reference = causal_lm if dtype == "fp32" else load_causal_lm(spec.source)
            validate_export(out, causal_lm=reference, fallback=scorer)


def ensure_export(model: str, out_dir: str | Path, *, dtype: str = "fp32", validate: bool = True) -> Path:
    """The export of `model` in `out_dir`, made only when the one there is missing or stale.

    Stale (the one rule for the demo, the benchmarks and the checks): no model.onnx or spec.json, or
    a spec.json naming another source, another dtype, or another padding side than the current graph's.

    Returns:
        The export directory.
    """
    from .scorer import PADDING_SIDE

    out = Path(out_dir)
    source = resolve_spec(model).source
    if (out / ONNX_FILENAME).is_file() and (out / SPEC_FILENAME).is_file():
        spec = ModelSpec.load(out)
        if (spec.source, spec.dtype, spec.padding_side) == (source, dtype, PADDING_SIDE):
            log.info("reusing the export in %s", out)
            return out
    export_onnx(model, out, dtype=dtype, validate=validate)
    return out
