"""FP16/BF16 safety of the folded-head scorer on the real shapes: finite, and how far from fp32.

Runtimes: torch (CPU or GPU; CPU fp16 GEMMs are very slow, bf16 ones too on a CPU without native
bf16) or ONNX Runtime on the exported graphs (CPU, or `--device cuda` with onnxruntime-gpu and the
onnx target's CUDA provider options; every fp16-typed tensor is materialised in fp16, so overflow
shows up as inf exactly as on a GPU, while products accumulate in fp32 as GPU tensor cores do), or
`openvino`: bf16 exactly as the portable target serves it (OpenVINO on the fp32 export, against ONNX
Runtime fp32; CPUs with AVX512_BF16 or AMX only), or `emulated`: the fp32 scorer at fp32 speed with
every weight and every matmul input and output rounded to fp16 or bf16 (overflow becomes inf as in
fp16; accumulation stays fp32 as on tensor cores and bf16 dot-product units). It does not round the
softmax probabilities or SiLU's output before their next product: precision there is slightly better
than the real dtype, range is the same. It makes 8k-token checks of the real shapes possible on a CPU.

Two kinds of cases: padded grids and long rows (max |Δ| per case), and `--requests` mixed-length
requests scored as the dispatch sends them (length-sorted, padded sub-batches, one long document
each): per request max |Δ|, |Δ| relative to the request's score spread, Spearman and top-10 overlap.
"""

from __future__ import annotations

import argparse
import copy
import time

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


def requests(spec, count: int, docs: int, median: int, long_document: int, seed: int = 0):
    """(label, [(ids, mask, rows)] sub-batches, documents): random-token requests of lognormal lengths (sigma 0.6)
    around `median` tokens plus one of `long_document` tokens, as the dispatch sends them: length-sorted sub-batches
    of up to 8 rows, each right-padded to a multiple of 8 over its longest row."""
    from mxbai_triton.core.preprocess import pad_sequences, padded_length

    from .workload import LENGTH_SIGMAS, mixed_lengths

    for r in range(count):
        lengths = mixed_lengths(docs, LENGTH_SIGMAS["lognormal-0.6"], median=median, seed=seed + r)
        if long_document:
            lengths[0] = long_document
        rng = np.random.default_rng(seed + 100 + r)
        sequences = [rng.integers(0, spec.pad_token_id, int(n)).tolist() for n in lengths]
        order = np.argsort(lengths, kind="stable")
        batches = []
        for start in range(0, docs, 8):
            rows = order[start:start + 8]
            width = padded_length(int(lengths[rows[-1]]))
            batches.append((*pad_sequences([sequences[i] for i in rows], width, spec.pad_token_id, spec.padding_side), rows))
        yield f"request {r}: {docs} docs, median {median}, longest {int(lengths.max())}", batches, docs


def _torch_scorer(scorer, device):
    import torch

    scorer = scorer.eval().to(device)

    def score(ids, mask):
        with torch.inference_mode():
            scores = scorer(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
        return scores[:, 0].float().cpu().numpy()
    return score


def _onnx_scorer(checkpoint, dtype: str, device: str):
    from mxbai_triton.core.model import ONNX_FILENAME
    from mxbai_triton.core.runtime import onnx_session
    from mxbai_triton.export.onnx_export import ensure_export

    export_dir = ensure_export(str(checkpoint), checkpoint.parent / f"{checkpoint.name}-export-{dtype}", dtype=dtype,
                               validate=False)
    cuda_options = None
    if device.startswith("cuda"):  # the onnx target's own provider options (onnxruntime-gpu)
        from mxbai_triton.model_repository.ort_cuda_options import SCORER_OPTIONS as cuda_options
    session = onnx_session(export_dir / ONNX_FILENAME, cuda_options=cuda_options)
    return lambda ids, mask: session.run(None, {"input_ids": ids, "attention_mask": mask})[0][:, 0]


def _served_scorers(checkpoint, dtype: str) -> dict:
    """fp32 on ONNX Runtime and `dtype` on OpenVINO, both on the fp32 export: the portable target's two paths."""
    from mxbai_triton.core.model import ONNX_FILENAME
    from mxbai_triton.core.runtime import CpuScoring, cpu_scorer
    from mxbai_triton.export.onnx_export import ensure_export

    if dtype != "bf16":
        raise ValueError("--runtime openvino serves bf16 (--dtype bf16)")
    model = ensure_export(str(checkpoint), checkpoint.parent / f"{checkpoint.name}-export-fp32", validate=False) / ONNX_FILENAME
    names = ("input_ids", "attention_mask")
    reduced = cpu_scorer(model, names, CpuScoring("openvino", "bf16"))  # refuses a CPU without bf16 first
    exact = cpu_scorer(model, names, CpuScoring("onnxruntime", "fp32"))
    return {"fp32": lambda ids, mask: exact(ids, mask)[:, 0], dtype: lambda ids, mask: reduced(ids, mask)[:, 0]}


def scorers(args, checkpoint, spec) -> dict:
    """{"fp32": f, dtype: f} with f(ids, mask) -> scores, for the chosen runtime."""
    from mxbai_triton.export.checkpoint import load_causal_lm
    from mxbai_triton.export.fp16_emulation import emulate_reduced
    from mxbai_triton.export.scorer import FoldedHeadScorer

    if args.runtime == "onnxruntime":
        return {dtype: _onnx_scorer(checkpoint, dtype, args.device) for dtype in ("fp32", args.dtype)}
    if args.runtime == "openvino":
        return _served_scorers(checkpoint, args.dtype)
    lm = load_causal_lm(str(checkpoint))
    reduced = FoldedHeadScorer(copy.deepcopy(lm), spec, "fp32" if args.runtime == "emulated" else args.dtype)
    if args.runtime == "emulated":
        reduced = emulate_reduced(reduced, args.dtype)
    return {"fp32": _torch_scorer(FoldedHeadScorer(lm, spec, "fp32"), args.device), args.dtype: _torch_scorer(reduced, args.device)}


def _timed(fn, *inputs):
    start = time.perf_counter()
    return fn(*inputs), time.perf_counter() - start


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
    parser.add_argument("--requests", type=int, default=0, help="mixed-length requests compared per request (0: none)")
    parser.add_argument("--docs", type=int, default=24, help="documents per request")
    parser.add_argument("--median", type=int, default=150, help="median document tokens of a request")
    parser.add_argument("--long-document", type=int, default=2048, help="tokens of each request's one long document (0: none)")
    parser.add_argument("--runtime", default="torch", choices=["torch", "onnxruntime", "openvino", "emulated"],
                        help="what computes the reduced precision: torch, ONNX Runtime, OpenVINO (bf16, as served), "
                             "or emulated on CPU")
    parser.add_argument("--atol", type=float, default=0.02,
                        help="largest |reduced - fp32| score difference accepted (exit 1 above it or on inf/NaN)")


def run(args: argparse.Namespace) -> int:
    from mxbai_triton.core.model import resolve_spec
    from mxbai_triton.export.standin import ensure_standin

    from .agreement import TABLE_HEADER, agreement, summary_row

    checkpoint = ensure_standin(args.checkpoint or f"artifacts/standin-{args.size}", size=args.size)
    spec = resolve_spec(str(checkpoint))
    lengths = [int(x) for x in args.lengths.split(",") if x]
    long_cases = [c for c in args.long_cases.split(",") if c]
    if set(long_cases) - set(LONG_CASES):
        raise ValueError(f"--long-cases takes {', '.join(LONG_CASES)}")
    grid = list(cases(spec, args.batch, lengths, args.long_length, long_cases))
    score = scorers(args, checkpoint, spec)
    origin = f"{args.size} stand-in" if args.checkpoint is None else "given checkpoint"
    print(f"{checkpoint} ({origin}), {args.dtype} vs fp32, {args.runtime} on {args.device}", flush=True)
    worst = 0.0
    for label, ids, mask in grid:
        (exact, seconds), (approx, low_seconds) = (_timed(score[d], ids, mask) for d in ("fp32", args.dtype))
        result = agreement(exact, approx)
        worst = max(worst, result.max_abs)
        print(f"  {label:28s} finite={result.finite} max|diff|={result.max_abs:.4g} max|fp32|={np.max(np.abs(exact)):.4g} "
              f"(fp32 {seconds:.0f}s, {args.dtype} {low_seconds:.0f}s)", flush=True)
    if args.requests:
        print(f"\n{TABLE_HEADER}", flush=True)
    for label, batches, docs in requests(spec, args.requests, args.docs, args.median, args.long_document):
        exact, approx = np.zeros(docs, np.float32), np.zeros(docs, np.float32)
        for ids, mask, rows in batches:
            exact[rows], approx[rows] = score["fp32"](ids, mask), score[args.dtype](ids, mask)
        result = agreement(exact, approx)
        worst = max(worst, result.max_abs)
        print(summary_row(label, result), flush=True)
    verdict = "within" if worst <= args.atol else "OUTSIDE"
    print(f"worst max|diff|: {worst:.4g}, {verdict} the tolerance {args.atol:g}")
    return 0 if worst <= args.atol else 1


if __name__ == "__main__":
    from .script import script_main

    raise SystemExit(script_main(__doc__, add_arguments, run))
