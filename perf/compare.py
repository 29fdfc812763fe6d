"""Same checkpoint, same workload: the reference's rank() vs in-process ONNX Runtime vs our Triton ensemble."""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .script import add_standin_arguments
from .workload import LENGTH_SIGMAS, mixed_documents, synthetic_documents


def prepare(size: str, workdir: Path) -> tuple[Path, Path]:
    """Seeded stand-in and its fp32 export under `workdir`, built once and reused while current."""
    from mxbai_triton.export.onnx_export import ensure_export
    from mxbai_triton.export.standin import ensure_standin

    checkpoint = ensure_standin(workdir / f"standin-{size}", size=size)
    return checkpoint, ensure_export(str(checkpoint), workdir / f"standin-{size}-export-fp32")


def standin_repository(size: str, workdir: Path, folder: str) -> Path:
    """The stand-in's export as a portable repository with ensemble "reranker" under `workdir`/`folder`."""
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.model_repository.generate import generate_repository

    export = prepare(size, workdir)[1]
    return generate_repository(workdir / folder, ModelSpec.load(export), target="portable", name="reranker",
                               export_dir=export)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def run_reference(checkpoint: Path, workload):
    import torch
    from mxbai_rerank import MxbaiRerankV2

    model = MxbaiRerankV2(str(checkpoint), device="cpu", torch_dtype=torch.float32)
    model.predict(["warm-up"], ["warm-up"])

    def rank(query, documents):
        scores = np.zeros(len(documents), dtype=np.float32)
        for result in model.rank(query, documents, top_k=len(documents), return_documents=False):
            scores[result.index] = result.score
        return scores

    return timed(lambda: [rank(q, d) for q, d in workload])


def run_onnxruntime(export: Path, workload):
    from mxbai_triton.core.model import ONNX_FILENAME
    from mxbai_triton.core.preprocess import RerankPreprocessor, pad_sequences, padded_length
    from mxbai_triton.core.runtime import onnx_session

    pre = RerankPreprocessor.from_dir(export)
    session = onnx_session(export / ONNX_FILENAME)

    def score(query, documents):
        sequences = pre.encode(query, documents)
        spec = pre.spec
        ids, mask = pad_sequences(sequences, padded_length(max(map(len, sequences))), spec.pad_token_id, spec.padding_side)
        return session.run(None, {"input_ids": ids, "attention_mask": mask})[0][:, 0]

    score(*workload[0])  # warm-up, as the server gets: the first run allocates ONNX Runtime's buffers
    return timed(lambda: [score(q, d) for q, d in workload])


def run_triton(export: Path, workload, concurrencies: list[int], workdir: Path, padding: str | None = None):
    from mxbai_triton.client import RerankClient
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.model_repository.generate import generate_repository
    from mxbai_triton.model_repository.server import TritonServer

    repo = generate_repository(workdir / "compare-repository", ModelSpec.load(export), target="portable", name="reranker",
                               export_dir=export, padding=padding)
    results = {}
    with TritonServer.on_free_ports(repo, stop_grace=0) as server:
        with RerankClient(server.grpc_url, model="reranker", timeout=600) as client:
            client.scores(*workload[0])  # warm-up: first execution initialises ONNX Runtime
            for concurrency in concurrencies:
                with ThreadPoolExecutor(concurrency) as pool:
                    results[concurrency] = timed(lambda: list(pool.map(lambda w: client.scores(*w), workload)))
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_standin_arguments(parser)
    parser.add_argument("--queries", type=int, default=8, help="queries in the workload")
    parser.add_argument("--docs", type=int, default=32, help="documents per query")
    parser.add_argument("--doc-tokens", type=int, default=200, help="tokens per document (the median for mixed lengths)")
    parser.add_argument("--lengths", default="uniform", choices=["uniform", *LENGTH_SIGMAS],
                        help="document lengths: all equal, or lognormal like retrieved chunks")
    parser.add_argument("--concurrency", default="1,4", help="client concurrency levels for the served path, comma-separated")
    parser.add_argument("--padding", default=None, choices=["buckets", "multiple"],
                        help="tokenizer padding (default: the portable target's)")


def run(args: argparse.Namespace) -> int:

    workdir = Path(args.workdir)
    checkpoint, export = prepare(args.size, workdir)
    def documents(seed: int) -> list[str]:
        if args.lengths == "uniform":
            return synthetic_documents(args.docs, args.doc_tokens, seed=seed)
        return mixed_documents(args.docs, LENGTH_SIGMAS[args.lengths], median=args.doc_tokens, seed=seed)

    workload = [(f"query {i}: which documents talk about search relevance?", documents(i)) for i in range(args.queries)]
    total = args.queries * args.docs
    print(f"workload: {args.size} stand-in, {args.queries} queries x {args.docs} docs x ~{args.doc_tokens} tokens, "
          f"{args.lengths} lengths ({time.strftime('%Y-%m-%d')})", flush=True)

    reference, reference_s = run_reference(checkpoint, workload)
    print(f"  reference rank()             {total / reference_s:8.1f} docs/s", flush=True)
    onnx, onnx_s = run_onnxruntime(export, workload)
    print(f"  in-process ONNX Runtime (one batch per query) {total / onnx_s:8.1f} docs/s", flush=True)
    triton = run_triton(export, workload, [int(c) for c in args.concurrency.split(",")], workdir, args.padding)

    rows = [("reference (MxbaiRerankV2.rank)", reference_s), ("in-process ONNX Runtime, one batch per query", onnx_s)]
    rows += [(f"Triton ensemble, concurrency {c}", seconds) for c, (_, seconds) in triton.items()]
    print()
    print("| path | docs/s | vs reference | vs in-process ORT |")
    print("|---|---:|---:|---:|")
    for label, seconds in rows:
        print(f"| {label} | {total / seconds:.1f} | {reference_s / seconds:.2f}x | {onnx_s / seconds:.2f}x |")
    worst = max(
        float(np.max(np.abs(np.concatenate(scores) - np.concatenate(reference))))
        for scores in [onnx] + [s for s, _ in triton.values()]
    )
    print(f"\nmax |score - reference| over every path: {worst:.2g}")
    return 0


if __name__ == "__main__":
    from .script import script_main

    raise SystemExit(script_main(__doc__, add_arguments, run))
