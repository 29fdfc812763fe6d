"""FP16 safety of the folded-head scorer on the real shapes: finite, and how far from fp32 (torch, CPU or GPU)."""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np


def cases(spec, batch: int, lengths: list[int], long_length: int):
    from mxbai_triton.export.validate import grid_inputs

    for length in lengths:
        yield f"{batch}x{length} padded", *grid_inputs(batch, length, spec)
    # A long row next to a single-token row (all but one position padding), then one row of the
    # longest length alone: unfused attention holds heads x seq^2 fp32 scores per row.
    ids, mask = grid_inputs(2, long_length // 2, spec)
    mask[1, :-1], ids[1, :-1] = 0, spec.pad_token_id
    yield f"2x{long_length // 2} (one row 1 token)", ids, mask
    yield f"1x{long_length}", *grid_inputs(1, long_length, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="base", choices=["tiny", "small", "base", "large"])
    parser.add_argument("--checkpoint", default=None, help="checkpoint dir (default: a seeded stand-in in artifacts/)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp16", choices=["fp16", "bf16"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lengths", default="512")
    parser.add_argument("--long-length", type=int, default=8272)
    args = parser.parse_args(argv)

    import torch

    from mxbai_triton.export.onnx_export import load_causal_lm
    from mxbai_triton.export.scorer import FoldedHeadScorer
    from mxbai_triton.export.spec import resolve_spec
    from mxbai_triton.export.standin import build_standin

    checkpoint = Path(args.checkpoint or f"artifacts/standin-{args.size}")
    if not (checkpoint / "model.safetensors").is_file():
        build_standin(checkpoint, size=args.size, seed=0)
    spec = resolve_spec(str(checkpoint))
    lm = load_causal_lm(str(checkpoint))
    reference = FoldedHeadScorer(lm, spec, "fp32").eval().to(args.device)
    low = FoldedHeadScorer(copy.deepcopy(lm), spec, args.dtype).eval().to(args.device)
    print(f"{checkpoint} ({args.size}), {args.dtype} vs fp32 on {args.device}")
    worst = 0.0
    for label, ids, mask in cases(spec, args.batch, [int(x) for x in args.lengths.split(",")], args.long_length):
        feed = (torch.from_numpy(ids).to(args.device), torch.from_numpy(mask).to(args.device))
        start = time.perf_counter()
        with torch.inference_mode():
            exact = reference(*feed)[:, 0].float().cpu().numpy()
            approx = low(*feed)[:, 0].float().cpu().numpy()
        finite = bool(np.isfinite(approx).all())
        diff = float(np.max(np.abs(approx - exact))) if finite else float("inf")
        worst = max(worst, diff)
        print(f"  {label:28s} finite={finite} max|diff|={diff:.4g} max|fp32|={np.max(np.abs(exact)):.4g} ({time.perf_counter() - start:.0f}s)", flush=True)
    print(f"worst max|diff|: {worst:.4g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
