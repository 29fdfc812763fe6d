"""GPU check: folded-head scorer throughput in fp16/bf16 on the base shape, as a fraction of the matmul roofline."""

from __future__ import annotations

import argparse
import time

from mxbai_triton.core.memory import SIZES

from .gpu_check import flops_per_row

# Measured bf16 dense matmul rate on the lent H100/H200 (see perf/NOTES.md).
ROOFLINE_TFLOPS = 790.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", default="base", choices=tuple(SIZES), help="model shape (random weights)")
    parser.add_argument("--docs", type=int, default=100, help="rows per batch")
    parser.add_argument("--seq", type=int, default=304, help="padded tokens per document (~300)")
    parser.add_argument("--batch", type=int, default=50, help="documents per forward")
    parser.add_argument("--repeats", type=int, default=10, help="timed repetitions")


def run(args: argparse.Namespace) -> int:

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from mxbai_triton.core.memory import VOCAB_SIZE
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.export.scorer import FoldedHeadScorer

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run this on the GPU machine")
    hidden, layers, heads, kv_heads, inter = SIZES[args.size]
    config = Qwen2Config(vocab_size=VOCAB_SIZE, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=kv_heads, intermediate_size=inter, max_position_embeddings=32768,
                         rope_theta=1e6, tie_word_embeddings=True)
    torch.manual_seed(0)
    spec = ModelSpec(name=args.size, source="random")
    ids = torch.randint(0, 151643, (args.docs, args.seq), device="cuda")
    mask = torch.ones_like(ids)
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  {args.size}: "
          f"{args.docs} docs x {args.seq} tokens, batch {args.batch}")
    for dtype in ("fp16", "bf16"):
        scorer = FoldedHeadScorer(Qwen2ForCausalLM(config), spec, dtype).eval().cuda()
        with torch.inference_mode():
            for _ in range(2):  # warm-up
                for start in range(0, args.docs, args.batch):
                    scorer(ids[start:start + args.batch], mask[start:start + args.batch])
            torch.cuda.synchronize()
            began = time.perf_counter()
            for _ in range(args.repeats):
                for start in range(0, args.docs, args.batch):
                    scores = scorer(ids[start:start + args.batch], mask[start:start + args.batch])
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - began) / args.repeats
        tflops = flops_per_row(SIZES[args.size], args.seq) * args.docs / seconds / 1e12
        finite = bool(torch.isfinite(scores).all())
        print(f"  {dtype}: {seconds * 1e3:8.2f} ms per {args.docs} docs  {args.docs * args.seq / seconds:12,.0f} tokens/s  "
              f"{tflops:6.1f} TFLOP/s = {tflops / ROOFLINE_TFLOPS:.1%} of {ROOFLINE_TFLOPS:.0f}  finite={finite}")
        del scorer
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    from .script import script_main

    raise SystemExit(script_main(__doc__, add_arguments, run))
