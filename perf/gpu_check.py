"""GPU check kit: the fused-attention scorer on base and large shapes, with only torch installed.

For each shape: fp16 and bf16 scores against fp32 (heavy right padding, 1-token rows, an 8k row),
again with the pad token's embedding set to NaN (every pad position non-finite: the fused kernels and
the last layer's attention must keep it out of real rows), scorer tokens/s for 100 docs x ~300
tokens and for 4 x 8k, the fraction of the bf16 matmul peak measured on this GPU, and the peak GPU
memory of each TensorRT profile's largest shape against export/memory.py's model. Random weights
(std 0.02): valid for speed and memory, and for dtype agreement of the graph, not for trained
accuracy. `--dry-run` runs the tiny shape on CPU with small lengths, so the kit is exercised by `make test`.
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np

from mxbai_triton.core.cost import flops
from mxbai_triton.core.memory import SIZES as SHAPES  # base/large: the real shapes
from mxbai_triton.core.memory import VOCAB_SIZE as VOCAB
from mxbai_triton.core.memory import Architecture


def random_causal_lm(shape, seed: int = 0):
    """A module tree with Qwen2ForCausalLM's attribute names and random weights, built with torch alone."""
    import torch
    from torch import nn

    hidden, layers, heads, kv_heads, inter = shape
    head_dim = hidden // heads
    torch.manual_seed(seed)

    def linear(i, o, bias=False):
        layer = nn.Linear(i, o, bias=bias)
        nn.init.normal_(layer.weight, std=0.02)
        if bias:
            nn.init.normal_(layer.bias, std=0.02)
        return layer

    blocks = nn.ModuleList()
    for _ in range(layers):
        block = nn.Module()
        block.self_attn = nn.Module()
        attn = block.self_attn
        attn.q_proj, attn.k_proj = linear(hidden, heads * head_dim, True), linear(hidden, kv_heads * head_dim, True)
        attn.v_proj, attn.o_proj = linear(hidden, kv_heads * head_dim, True), linear(heads * head_dim, hidden)
        block.mlp = nn.Module()
        block.mlp.gate_proj, block.mlp.up_proj = linear(hidden, inter), linear(hidden, inter)
        block.mlp.down_proj = linear(inter, hidden)
        block.input_layernorm, block.post_attention_layernorm = nn.Module(), nn.Module()
        block.input_layernorm.weight = nn.Parameter(torch.ones(hidden))
        block.post_attention_layernorm.weight = nn.Parameter(torch.ones(hidden))
        blocks.append(block)
    body = nn.Module()
    body.embed_tokens = nn.Embedding(VOCAB, hidden)
    nn.init.normal_(body.embed_tokens.weight, std=0.02)
    body.layers = blocks
    body.norm = nn.Module()
    body.norm.weight = nn.Parameter(torch.ones(hidden))
    lm = nn.Module()
    lm.model = body
    lm.config = SimpleNamespace(num_attention_heads=heads, num_key_value_heads=kv_heads, hidden_size=hidden,
                                rms_norm_eps=1e-6, rope_theta=1e6, use_sliding_window=False)
    lm.get_output_embeddings = lambda: body.embed_tokens  # tied
    return lm.eval()


def matmul_peak_tflops(device: str, size: int, repeats: int, dtype: str | None = None,
                       shape: tuple[int, int, int] | None = None) -> float:
    """Dense matmul rate measured here in `dtype` ("fp32", "bf16"; default bf16 on a GPU, fp32 on a CPU):
    the roofline of that precision that a scorer's rate is a fraction of. `shape` (m, k, n) instead
    of a square `size`: a model's own GEMM."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype or ("bf16" if device.startswith("cuda") else "fp32")]
    m, k, n = shape or (size, size, size)
    a = torch.randn(m, k, device=device, dtype=dtype)
    # Laid out as a Linear layer's weight ([n, k], used transposed), as the models multiply: on an AVX2
    # CPU torch 2.13 ran bf16 GEMMs of this layout at 20 GFLOP/s, of a plain [k, n] operand at 1 (measured).
    b = torch.randn(n, k, device=device, dtype=dtype).t()
    a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * m * k * n * repeats / (time.perf_counter() - start) / 1e12


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def flops_per_row(shape, seq: int) -> float:
    """Matmul FLOPs of one row: projections + MLP (2 per weight per token) + causal QK^T and PV, by the
    formula the dispatch's cost model uses (core/cost.py): base-v2 is ~0.72 GFLOP per token."""
    return flops(Architecture(*shape), 1, seq)


def agreement_cases(spec, long_length: int):
    """(label, ids, mask): padded rows down to 1 token, and one long row beside a 1-token row."""
    from mxbai_triton.core.preprocess import pad_sequences

    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 151643, n).tolist() for n in (300, 150, 20, 1)]
    yield "4x304, rows 300/150/20/1 tokens", *pad_sequences(rows, 304, spec.pad_token_id, spec.padding_side)
    long_rows = [rng.integers(0, 151643, long_length).tolist(), rows[-1]]
    yield f"2x{long_length}, second row 1 token", *pad_sequences(long_rows, long_length, spec.pad_token_id, spec.padding_side)


@contextmanager
def pad_embedding_set_to(scorer, pad_token_id: int, value: float):
    """The scorer with the pad token's embedding row set to `value` (restored afterwards)."""
    import torch

    table = scorer.body.embed_tokens.weight
    saved = table[pad_token_id].clone()
    with torch.no_grad():
        table[pad_token_id] = value
    try:
        yield scorer
    finally:
        with torch.no_grad():
            table[pad_token_id] = saved


def profile_peaks(scorer, spec, arch, dtype: str, device: str, profiles, rows: int) -> list[str]:
    """Each profile's largest shape [rows, seq_max] run once: peak activation memory against the model's."""
    import torch

    from mxbai_triton.core.memory import GIB, profile_memory

    lines, measured_total = [], 0
    modelled = profile_memory(profiles, rows, arch, dtype)
    for (low, _, high), model in zip(profiles, modelled):
        ids = torch.randint(0, 151643, (rows, high), device=device)
        label = f"  profile {low}-{high} at {rows} x {high} {dtype}: "
        if not device.startswith("cuda"):
            scorer(ids, torch.ones_like(ids))
            lines.append(label + f"ran (no peak memory on CPU); modelled {model.activation_bytes / GIB:.2f} GiB")
            continue
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        try:
            scorer(ids, torch.ones_like(ids))
            torch.cuda.synchronize()
        except torch.cuda.OutOfMemoryError:
            lines.append(label + f"OUT OF MEMORY (modelled {model.activation_bytes / GIB:.2f} GiB): torch ran it unfused?")
            continue
        used = torch.cuda.max_memory_allocated() - base
        measured_total += used
        lines.append(label + f"peak {used / GIB:.2f} GiB vs modelled {model.activation_bytes / GIB:.2f} GiB "
                             f"({used / model.activation_bytes:.2f}x)")
    if device.startswith("cuda"):
        lines.append(f"  every profile kept at once (one Triton instance): measured {measured_total / GIB:.2f} GiB vs "
                     f"modelled {sum(m.activation_bytes for m in modelled) / GIB:.2f} GiB")
    return lines


def check_shape(name: str, shape, device: str, args, peak: float) -> bool:
    import copy

    import torch

    from mxbai_triton.core.memory import Architecture, activation_bytes_per_token, deployment_shape, weight_bytes
    from mxbai_triton.core.model import KNOWN_MODELS, ModelSpec
    from mxbai_triton.export.scorer import FoldedHeadScorer

    spec = KNOWN_MODELS.get(f"{name}-v2", ModelSpec(name=name, source="random"))
    lm = random_causal_lm(shape)
    scorers = {d: FoldedHeadScorer(copy.deepcopy(lm), spec, d).eval().to(device) for d in ("fp32", "fp16", "bf16")}
    ok = True
    print(f"\n== {name}: hidden {shape[0]}, {shape[1]} layers, heads {shape[2]}/{shape[3]} ({device})", flush=True)
    with torch.inference_mode():
        for label, ids, mask in agreement_cases(spec, args.long_length):
            t_ids, t_mask = torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
            exact = scorers["fp32"](t_ids, t_mask)[:, 0].float().cpu().numpy()
            for dtype in ("fp16", "bf16"):
                got = scorers[dtype](t_ids, t_mask)[:, 0].float().cpu().numpy()
                with pad_embedding_set_to(scorers[dtype], spec.pad_token_id, float("nan")) as poisoned:
                    got_poisoned = poisoned(t_ids, t_mask)[:, 0].float().cpu().numpy()
                for variant, scores in (("", got), (", pads NaN", got_poisoned)):
                    finite = bool(np.isfinite(scores).all())
                    diff = float(np.max(np.abs(scores - exact))) if finite else float("inf")
                    passed = finite and diff <= args.atol[dtype]
                    ok &= passed
                    print(f"  {label:34s} {dtype}{variant} vs fp32: max|diff| {diff:.4g} (tolerance {args.atol[dtype]}) "
                          f"{'ok' if passed else 'FAIL'}", flush=True)
        del scorers["fp32"]
        arch = Architecture(*shape)
        for rows, seq in ((args.docs, args.doc_tokens), (4, args.long_length)):
            for dtype in ("fp16", "bf16"):
                scorer = scorers[dtype]
                ids = torch.randint(0, 151643, (rows, seq), device=device)
                mask = torch.ones_like(ids)
                scorer(ids[:1, :16], mask[:1, :16])
                if device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                _sync(device)
                start = time.perf_counter()
                for _ in range(args.repeats):
                    scorer(ids, mask)
                _sync(device)
                seconds = (time.perf_counter() - start) / args.repeats
                tflops = flops_per_row(shape, seq) * rows / seconds / 1e12
                line = (f"  {rows} x {seq} {dtype}: {rows * seq / seconds:12,.0f} tokens/s, {tflops:7.3g} TFLOP/s = "
                        f"{tflops / peak:6.1%} of the measured matmul peak")
                if device.startswith("cuda"):
                    used = torch.cuda.max_memory_allocated() - base
                    modelled = rows * seq * activation_bytes_per_token(arch, dtype)
                    line += (f"; peak activations {used / 2**30:.2f} GiB vs modelled {modelled / 2**30:.2f} GiB "
                             f"(weights {weight_bytes(arch, dtype) / 2**30:.2f} GiB)")
                print(line, flush=True)
        default_profiles, default_rows = deployment_shape(spec)
        profiles = args.profiles or default_profiles
        for line in profile_peaks(scorers["fp16"], spec, arch, "fp16", device, profiles, args.profile_rows or default_rows):
            print(line, flush=True)
    return ok


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="tiny shape on CPU, short lengths (what make test runs)")
    parser.add_argument("--shapes", default="base,large", help="model shapes to check, comma-separated")
    parser.add_argument("--docs", type=int, default=100, help="rows of the throughput batch")
    parser.add_argument("--doc-tokens", type=int, default=304, help="padded tokens per document (~300)")
    parser.add_argument("--long-length", type=int, default=8272, help="tokens of the long-row case")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions")
    parser.add_argument("--atol-fp16", type=float, default=0.02, help="largest |fp16 - fp32| score accepted")
    parser.add_argument("--atol-bf16", type=float, default=0.1, help="largest |bf16 - fp32| score accepted")
    parser.add_argument("--profile-rows", type=int, default=0, help="rows of each profile's peak-memory run (default: max_batch_size)")


def run(args: argparse.Namespace) -> int:
    args.atol = {"fp16": args.atol_fp16, "bf16": args.atol_bf16}

    import torch

    if args.dry_run:
        device, shapes = "cpu", ["tiny"]
        args.docs, args.doc_tokens, args.long_length, args.repeats = 4, 32, 128, 1
        args.profiles, args.profile_rows = ((1, 16, 32), (33, 48, 64)), 2
        peak = matmul_peak_tflops("cpu", 512, 4)
    else:
        if not torch.cuda.is_available():
            print("gpu-check: no CUDA device (use --dry-run on CPU)")
            return 3
        device, shapes, args.profiles = "cuda", args.shapes.split(","), None
        peak = matmul_peak_tflops("cuda", 8192, 20)
        print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  CUDA {torch.version.cuda}")
    print(f"measured matmul peak: {peak:.3g} TFLOP/s ({'bf16' if device == 'cuda' else 'fp32'}, {device})")
    ok = all([check_shape(name, SHAPES[name], device, args, peak) for name in shapes])
    print("\ngpu-check: " + ("every dtype within tolerance" if ok else "FAILED: a dtype outside tolerance or non-finite"))
    return 0 if ok else 1


if __name__ == "__main__":
    from .script import script_main

    raise SystemExit(script_main(__doc__, add_arguments, run))
