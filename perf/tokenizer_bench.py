"""Tokenizer stage vs a bare batched `tokenizers` encode of the same documents (the floor it sits on)."""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from .workload import QUERY, synthetic_documents


def interleaved_medians_ms(fns: dict, repeats: int) -> dict[str, float]:
    """Median ms of each function, run in turn so that machine noise hits all of them alike."""
    for fn in fns.values():
        fn()  # warm-up: the tokenizer's caches and thread pool
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--export", default=None, help="export directory (tokenizer.json, spec.json); default: the small stand-in's")
    parser.add_argument("--docs", type=int, default=100, help="documents per request")
    parser.add_argument("--words", type=int, default=250, help="words per document")
    parser.add_argument("--repeats", type=int, default=30, help="timed repetitions")
    parser.add_argument("--workdir", default="artifacts", help="where the stand-in is built and reused")


def run(args: argparse.Namespace) -> int:

    from tokenizers import Tokenizer

    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.core.preprocess import TOKENIZER_FILENAME
    from mxbai_triton.core.serving import ServingLimits
    from mxbai_triton.model_repository.tokenizer_backend import TokenizerCore

    if args.export:
        export = Path(args.export)
    else:
        from .compare import prepare

        export = prepare("small", Path(args.workdir))[1]
    documents = synthetic_documents(args.docs, args.words, seed=3)
    tokenizer = Tokenizer.from_file(str(export / TOKENIZER_FILENAME))
    with tempfile.TemporaryDirectory() as model_dir:
        shutil.copy(export / TOKENIZER_FILENAME, model_dir)
        spec = ModelSpec.load(export)
        spec.save(model_dir)
        ServingLimits.for_model(spec, bucket_bounds=()).save(model_dir)
        core = TokenizerCore(model_dir)
        request = (np.array([QUERY.encode()], dtype=object), np.array([d.encode() for d in documents], dtype=object), None)
        ms = interleaved_medians_ms({
            "encode_batch": lambda: tokenizer.encode_batch(documents, add_special_tokens=False),
            "encode_batch_fast": lambda: tokenizer.encode_batch_fast(documents, add_special_tokens=False),
            "stage": lambda: core.plan([core.parse(*request)]),
        }, args.repeats)
        batches = core.plan([core.parse(*request)])[0].batches

    floor = ms["encode_batch_fast"]
    print(f"{args.docs} documents x {args.words} words, median of {args.repeats} ({time.strftime('%Y-%m-%d')})")
    print(f"  bare tokenizers encode_batch           {ms['encode_batch']:7.2f} ms")
    print(f"  bare tokenizers encode_batch_fast      {floor:7.2f} ms  (the floor: no offsets)")
    print(f"  tokenizer stage (decode, encode, plan) {ms['stage']:7.2f} ms  -> {ms['stage'] / floor:.2f}x the floor, "
          f"{ms['stage'] / ms['encode_batch']:.2f}x encode_batch; {len(batches)} sub-batches")
    return 0


if __name__ == "__main__":
    from .script import script_main

    raise SystemExit(script_main(__doc__, add_arguments, run))
