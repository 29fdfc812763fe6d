"""Validation stage: the ONNX graph's signature, then ONNX Runtime vs PyTorch over a shape grid."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mxbai_triton.core.model import ONNX_FILENAME, ModelSpec
from mxbai_triton.core.preprocess import pad_sequences, repad
from mxbai_triton.core.runtime import onnx_session

log = logging.getLogger(__name__)

# |onnx - torch| <= atol + rtol * |torch|, per graph dtype.
TOLERANCES = {"fp32": (1e-4, 1e-4), "fp16": (5e-2, 2e-2), "bf16": (2e-1, 5e-2)}
DEFAULT_BATCHES = (1, 4)
DEFAULT_LENGTHS = (16, 97, 256)


class ValidationError(RuntimeError):
    """Raised with every failure found, not just the first."""


@dataclass(frozen=True)
class CaseResult:
    batch: int
    length: int
    max_abs_diff: float
    finite: bool
    ok: bool


def check_signature(onnx_path: str | Path, spec: ModelSpec) -> None:
    """Names, dtypes and dynamic axes of the graph against the spec; raises listing every mismatch."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    failures: list[str] = []
    int64, float32 = onnx.TensorProto.INT64, onnx.TensorProto.FLOAT

    def dims(value) -> list[str | int]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    inputs = {v.name: v for v in graph.input}
    outputs = {v.name: v for v in graph.output}
    expected_inputs = [spec.input_ids.name, spec.attention_mask.name]
    if list(inputs) != expected_inputs:
        failures.append(f"inputs are {list(inputs)}, expected {expected_inputs}")
    for name in expected_inputs:
        if name not in inputs:
            continue
        if inputs[name].type.tensor_type.elem_type != int64:
            failures.append(f"input {name} is not int64")
        shape = dims(inputs[name])
        if len(shape) != 2 or not all(isinstance(d, str) for d in shape):
            failures.append(f"input {name} has shape {shape}, expected two dynamic axes [batch, sequence]")
    if list(outputs) != [spec.scores.name]:
        failures.append(f"outputs are {list(outputs)}, expected [{spec.scores.name!r}]")
    else:
        out = outputs[spec.scores.name]
        if out.type.tensor_type.elem_type != float32:
            failures.append(f"output {spec.scores.name} is not float32")
        shape = dims(out)
        if len(shape) != 2 or not isinstance(shape[0], str) or shape[1] != 1:
            failures.append(f"output {spec.scores.name} has shape {shape}, expected [batch, 1]")
        elif len(inputs) == 2 and shape[0] != dims(inputs[spec.input_ids.name])[0]:
            failures.append(f"output batch axis {shape[0]!r} is not the inputs' batch axis")
    if failures:
        raise ValidationError(f"{onnx_path}: " + "; ".join(failures))


def grid_inputs(batch: int, length: int, spec: ModelSpec, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random regular tokens, padded on the spec's side so that row r keeps length - r*length//batch tokens (>= 1)."""
    rng = np.random.default_rng(seed + 1000 * batch + length)
    ids = rng.integers(0, spec.pad_token_id, size=(batch, length), dtype=np.int64)
    rows = [ids[row, : max(1, length - row * length // batch)].tolist() for row in range(batch)]
    return pad_sequences(rows, length, spec.pad_token_id, spec.padding_side)


def reference_scores(causal_lm, input_ids: np.ndarray, attention_mask: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """logits[:, -1, "1"] - logits[:, -1, "0"] from the full Hugging Face model, as the reference does
    (on the same rows left-padded, as the reference pads)."""
    import torch

    input_ids, attention_mask = repad(input_ids, attention_mask, spec.pad_token_id, "left")

    with torch.inference_mode():
        logits = causal_lm(
            input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(attention_mask), logits_to_keep=1
        ).logits[:, -1].float()
    return (logits[:, spec.yes_token_id] - logits[:, spec.no_token_id]).numpy()


def graph_runner(onnx_path: str | Path, spec: ModelSpec, fallback=None):
    """(ids, mask) -> scores with ONNX Runtime; for bf16, which it cannot run on CPU, the traced module.

    Args:
        onnx_path: The graph.
        spec: Its spec (tensor names, dtype).
        fallback: The PyTorch module the graph was traced from, used only for bf16 graphs that
            ONNX Runtime has no CPU kernels for (the TensorRT build is then the graph's first run).
    """
    try:
        session = onnx_session(onnx_path)
    except Exception as error:  # onnxruntime raises its own NotImplemented type
        if spec.dtype != "bf16" or "NOT_IMPLEMENTED" not in str(error):
            raise
        import torch

        if fallback is None:
            from .checkpoint import load_causal_lm
            from .scorer import FoldedHeadScorer

            fallback = FoldedHeadScorer(load_causal_lm(spec.source), spec, "bf16").eval()
        log.warning("note: ONNX Runtime has no bf16 CPU kernels; validating the traced bf16 PyTorch module")

        def run_module(ids, mask):
            with torch.inference_mode():
                return fallback(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy().reshape(-1)

        return run_module
    names = (spec.input_ids.name, spec.attention_mask.name)
    return lambda ids, mask: session.run(None, dict(zip(names, (ids, mask))))[0].reshape(-1)


def validate_export(
    export_dir: str | Path,
    *,
    causal_lm=None,
    batches: Iterable[int] = DEFAULT_BATCHES,
    lengths: Iterable[int] = DEFAULT_LENGTHS,
    fallback=None,
) -> list[CaseResult]:
    """Compare ONNX Runtime with PyTorch on every (batch, length); raise listing all failures.

    Args:
        export_dir: Directory written by `export_onnx`.
        causal_lm: The PyTorch model; loaded from spec.source when omitted.
        fallback: The traced module, for bf16 graphs (see `graph_runner`).
        batches: Batch sizes of the grid.
        lengths: Sequence lengths of the grid (rows are padded progressively).

    Returns:
        One result per grid case.
    """
    from .checkpoint import load_causal_lm

    export_dir = Path(export_dir)
    spec = ModelSpec.load(export_dir)
    check_signature(export_dir / ONNX_FILENAME, spec)
    causal_lm = causal_lm if causal_lm is not None else load_causal_lm(spec.source)
    run = graph_runner(export_dir / ONNX_FILENAME, spec, fallback)
    atol, rtol = TOLERANCES[spec.dtype]
    results, failures = [], []
    for batch in batches:
        for length in lengths:
            ids, mask = grid_inputs(batch, length, spec)
            expected = reference_scores(causal_lm, ids, mask, spec)
            got = run(ids, mask)
            finite = bool(np.isfinite(got).all())
            diff = float(np.max(np.abs(got - expected))) if finite else float("inf")
            ok = finite and bool(np.all(np.abs(got - expected) <= atol + rtol * np.abs(expected)))
            results.append(CaseResult(batch, length, diff, finite, ok))
            if not ok:
                failures.append(f"batch {batch} x {length}: max |diff| {diff:.3g}" + ("" if finite else " (non-finite)"))
    if failures:
        raise ValidationError(
            f"{len(failures)} of {len(results)} cases exceed atol {atol} + rtol {rtol} ({spec.dtype}): " + "; ".join(failures)
        )
    return results
