"""FP16 safety of the folded-head scorer on the real shapes: finite, and how far from fp32.

Runtimes: torch (CPU or GPU; CPU fp16 GEMMs are very slow) or ONNX Runtime on the exported graphs
(CPU, or `--device cuda` with onnxruntime-gpu and the onnx target's CUDA provider options; every
fp16-typed tensor is materialised in fp16, so overflow shows up as inf exactly as on a GPU, while
products accumulate in fp32 as GPU tensor cores do), or `emulated`: the fp32 scorer at fp32
speed with every weight and every matmul input and output rounded to fp16 (overflow becomes inf as in
fp16; accumulation stays fp32 as on tensor cores). It does not round the softmax probabilities or
SiLU's output before their next product: precision there is slightly better than real fp16, range
is the same. It makes 8k-token checks of the real shapes possible on a CPU.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np

from mxbai_triton.core.memory import SIZES

LONG_CASES = ("padded", "single")


def cases(spec, batch: int, lengths: list[int], long_length: int, long_cases=LONG_CASES):
    from mxbai_triton.core.preprocess import pad_sequences
    from mxbai_triton.export.validate import grid_inputs

    for length in lengths:
        yield f"{batch}x{length} padded", *grid_inputs(batch, length, spec)
    if long_length <= 0:
        return
    # A long row next to a single-token row (all but one position padding), then one row of the
    # longest length alone: unfused attention holds heads x seq^2 fp32 scores per row.
    if "padded" in long_cases:
        ids, mask = grid_inputs(2, long_length // 2, spec)
        one_token = [[int(ids[0][mask[0] == 1][0])]]
        ids[1:], mask[1:] = pad_sequences(one_token, long_length // 2, spec.pad_token_id, spec.padding_side)
        yield f"2x{long_length // 2} (one row 1 token)", ids, mask
    if "single" in long_cases:
        yield f"1x{long_length}", *grid_inputs(1, long_length, spec)


def _torch_outputs(scorer, device, grid):
    import torch

    scorer = scorer.eval().to(device)
    results = []
    for _, ids, mask in grid:
        start = time.perf_counter()
        with torch.inference_mode():
            scores = scorer(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
        results.append((scores[:, 0].float().cpu().numpy(), time.perf_counter() - start))
    return results


def _onnx_outputs(checkpoint: Path, dtype: str, grid, device: str):
    from mxbai_triton.core.model import ONNX_FILENAME
    from mxbai_triton.core.runtime import onnx_session
    from mxbai_triton.export.onnx_export import ensure_export

    export_dir = ensure_export(str(checkpoint), checkpoint.parent / f"{checkpoint.name}-export-{dtype}", dtype=dtype,
                               validate=False)
    cuda_options = None
    if device.startswith("cuda"):  # the onnx target's own provider options (onnxruntime-gpu)
        from mxbai_triton.model_repository.ort_cuda_options import SCORER_OPTIONS as cuda_options
    session = onnx_session(export_dir / ONNX_FILENAME, cuda_options=cuda_options)
    results = []
    for _, ids, mask in grid:
        start = time.perf_counter()
        (scores,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
        results.append((scores[:, 0], time.perf_counter() - start))
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", default="base", choices=tuple(SIZES), help="model shape (random weights)")
    parser.add_argument("--checkpoint", default=None, help="checkpoint dir (default: a seeded stand-in in artifacts/)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    parser.add_argument("--dtype", default="fp16", choices=["fp16", "bf16"], help="reduced precision compared with fp32")
    parser.add_argument("--batch", type=int, default=4, help="rows per case")
    parser.add_argument("--lengths", default="512", help="sequence lengths, comma-separated")
    parser.add_argument("--long-length", type=int, default=8272, help="0 skips the long cases")
    parser.add_argument("--long-cases", default="padded,single",
                        help="which long cases: padded (2 rows, one of 1 token), single (1 row of --long-length)")
    parser.add_argument("--runtime", default="torch", choices=["torch", "onnxruntime", "emulated"],
                        help="what computes the reduced precision: torch, ONNX Runtime, or fp16 emulated on CPU")
    parser.add_argument("--atol", type=float, default=0.02,
                        help="largest |fp16 - fp32| score difference accepted (exit 1 above it or on inf/NaN)")


def run(args: argparse.Namespace) -> int:

    from mxbai_triton.core.model import resolve_spec
    from mxbai_triton.export.checkpoint import load_causal_lm
    from mxbai_triton.export.fp16_emulation import emulate_fp16
    from mxbai_triton.export.scorer import FoldedHeadScorer
    from mxbai_triton.export.standin import ensure_standin

    checkpoint = ensure_standin(args.checkpoint or f"artifacts/standin-{args.size}", size=args.size)
    spec = resolve_spec(str(checkpoint))
    lengths = [int(x) for x in args.lengths.split(",") if x]
    long_cases = [c for c in args.long_cases.split(",") if c]
    if set(long_cases) - set(LONG_CASES):
        raise ValueError(f"--long-cases takes {', '.join(LONG_CASES)}")
    grid = list(cases(spec, args.batch, lengths, args.long_length, long_cases))
    if args.runtime == "onnxruntime":
        outputs = {dtype: _onnx_outputs(checkpoint, dtype, grid, args.device) for dtype in ("fp32", args.dtype)}
    elif args.runtime == "emulated":
        if args.dtype != "fp16":
            raise ValueError("--runtime emulated emulates fp16 only")
        lm = load_causal_lm(str(checkpoint))
        outputs = {"fp32": _torch_outputs(FoldedHeadScorer(lm, spec, "fp32"), args.device, grid)}
        emulated = emulate_fp16(FoldedHeadScorer(copy.deepcopy(lm), spec, "fp32"))
        outputs["fp16"] = _torch_outputs(emulated, args.device, grid)
    else:
        lm = load_causal_lm(str(checkpoint))
        outputs = {"fp32": _torch_outputs(FoldedHeadScorer(lm, spec, "fp32"), args.device, grid)}
        outputs[args.dtype] = _torch_outputs(FoldedHeadScorer(copy.deepcopy(lm), spec, args.dtype), args.device, grid)
    origin = f"{args.size} stand-in" if args.checkpoint is None else "given checkpoint"
    print(f"{checkpoint} ({origin}), {args.dtype} vs fp32, {args.runtime} on {args.device}")
    worst = 0.0
    for (label, _, _), (exact, seconds), (approx, low_seconds) in zip(grid, outputs["fp32"], outputs[args.dtype]):
        finite = bool(np.isfinite(approx).all())
        diff = float(np.max(np.abs(approx - exact))) if finite else float("inf")
        worst = max(worst, diff)
        print(f"  {label:28s} finite={finite} max|diff|={diff:.4g} max|fp32|={np.max(np.abs(exact)):.4g} "
              f"(fp32 {seconds:.0f}s, {args.dtype} {low_seconds:.0f}s)", flush=True)
    verdict = "within" if worst <= args.atol else "OUTSIDE"
    print(f"worst max|diff|: {worst:.4g}, {verdict} the tolerance {args.atol:g}")
    return 0 if worst <= args.atol else 1


if __name__ == "__main__":
    from .script import script_main

    raise SystemExit(script_main(__doc__, add_arguments, run))
