"""CPU time of in-process ONNX Runtime (our preprocessing) vs the reference, one query, one run each."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory (the reference loads it)")
    parser.add_argument("--export", required=True, help="export directory of the same checkpoint")
    parser.add_argument("--docs", type=int, default=16, help="documents scored")
    parser.add_argument("--doc-tokens", type=int, default=290, help="tokens per document")


def run(args: argparse.Namespace) -> int:

    from .compare import run_onnxruntime, run_reference
    from .workload import QUERY, synthetic_documents

    workload = [(QUERY, synthetic_documents(args.docs, args.doc_tokens))]
    (expected,), reference_s = run_reference(Path(args.checkpoint), workload)
    (scores,), onnx_s = run_onnxruntime(Path(args.export), workload)
    print(f"workload: 1 query x {args.docs} docs x ~{args.doc_tokens} tokens, {time.strftime('%Y-%m-%d')}")
    print(f"reference rank() (torch fp32):  {reference_s:7.2f} s")
    print(f"onnxruntime + our tokenizer:    {onnx_s:7.2f} s   ({reference_s / onnx_s:.2f}x faster)")
    print(f"max |score diff|: {float(np.max(np.abs(scores - expected))):.3g}")
    return 0


if __name__ == "__main__":
    from .script import script_main

    raise SystemExit(script_main(__doc__, add_arguments, run))
