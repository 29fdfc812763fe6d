"""Served-path benchmark on what users send: mixed-length 100-document requests vs length-grouped ones,
the small-request latency, and the tokens the engine computed per real token (dispatch counters)."""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mxbai_triton.model_repository.metrics_port import read_counters

from .compare import prepare
from .script import add_standin_arguments
from .workload import LENGTH_SIGMAS, QUERY, mixed_documents, synthetic_documents


def _timed_pool(concurrency: int, fn, items) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(fn, items))
    return time.perf_counter() - start


def small_request_latency(client, count: int) -> tuple[float, float]:
    """p50 and p90 in ms of a 3-document request at concurrency 1."""
    documents = synthetic_documents(3, 40, seed=7)
    client.scores(QUERY, documents)
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        client.scores(QUERY, documents)
        samples.append((time.perf_counter() - start) * 1e3)
    deciles = statistics.quantiles(samples, n=10)
    return statistics.median(samples), deciles[8]


def model_times(grpc_url: str, models: list[str]) -> dict[str, tuple[int, float, float]]:
    """Per model: successful requests, total ns in the model (queue + compute), queue ns (Triton statistics)."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(grpc_url) as client:
        out = {}
        for model in models:
            stats = client.get_inference_statistics(model).model_stats[0].inference_stats
            out[model] = (stats.success.count, float(stats.success.ns), float(stats.queue.ns))
        return out


def hop_breakdown(before: dict, after: dict) -> str:
    """Mean ms per request spent in each model between two `model_times` readings."""
    lines = ["| model | requests | mean ms per request | of which queued |", "|---|---:|---:|---:|"]
    for model in after:
        count = after[model][0] - before[model][0]
        total, queue = ((after[model][i] - before[model][i]) / max(count, 1) / 1e6 for i in (1, 2))
        lines.append(f"| {model} | {count} | {total:.2f} | {queue:.2f} |")
    return "\n".join(lines)


def grouped_requests(queries: list[tuple[str, list[str]]], pre, size: int = 10) -> list[tuple[str, list[str]]]:
    """The same documents as requests of `size` length-neighbours (what a length-aware client would send)."""
    grouped = []
    for query, documents in queries:
        order = np.argsort([len(ids) for ids in pre.encode(query, documents)], kind="stable")
        grouped += [(query, [documents[i] for i in order[k:k + size]]) for k in range(0, len(order), size)]
    return grouped


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_standin_arguments(parser)
    parser.add_argument("--queries", type=int, default=4, help="100-document queries per distribution")
    parser.add_argument("--docs", type=int, default=100, help="documents per query")
    parser.add_argument("--concurrency", type=int, default=2, help="client concurrency")
    parser.add_argument("--latency-requests", type=int, default=100, help="3-document requests timed one after another")
    parser.add_argument("--padding", default=None, choices=["buckets", "multiple"], help="default: the portable target's")
    parser.add_argument("--sigmas", default=",".join(LENGTH_SIGMAS), help=f"of {', '.join(LENGTH_SIGMAS)}")
    parser.add_argument("--export", default=None, help="an existing export directory instead of the --size stand-in")


def run(args: argparse.Namespace) -> int:

    from mxbai_triton.client import RerankClient
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.core.preprocess import RerankPreprocessor
    from mxbai_triton.model_repository.generate import generate_repository
    from mxbai_triton.model_repository.server import TritonServer

    workdir = Path(args.workdir)
    export = Path(args.export) if args.export else prepare(args.size, workdir)[1]
    pre = RerankPreprocessor.from_dir(export)
    repository = generate_repository(workdir / "served-bench-repository", ModelSpec.load(export), target="portable",
                                     name="reranker", export_dir=export, padding=args.padding)
    print(f"served benchmark: {args.export or args.size + ' stand-in'}, portable target, padding {args.padding or 'default'}, "
          f"{time.strftime('%Y-%m-%d')}", flush=True)
    with TritonServer.on_free_ports(repository, stop_grace=0) as server, \
            RerankClient(server.grpc_url, model="reranker", timeout=600) as client:
        metrics_url = server.metrics_url
        models = ["reranker", "reranker_tokenizer", "reranker_scorer"]
        client.scores(QUERY, ["warm-up"])
        before = model_times(server.grpc_url, models)
        p50, p90 = small_request_latency(client, args.latency_requests)
        print(f"3-document request, concurrency 1: p50 {p50:.2f} ms, p90 {p90:.2f} ms (client side)", flush=True)
        print(hop_breakdown(before, model_times(server.grpc_url, models)), flush=True)
        print("\n| lengths | real tokens | computed / real | sub-batches | mixed s | grouped s | grouped / mixed |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for label in [s for s in args.sigmas.split(",") if s]:
            queries = [(f"query {q}: {QUERY}", mixed_documents(args.docs, LENGTH_SIGMAS[label], seed=100 + q))
                       for q in range(args.queries)]
            client.scores(*queries[0])  # warm-up: ONNX Runtime allocates for these shapes once
            before = read_counters(metrics_url)
            mixed_s = _timed_pool(args.concurrency, lambda w: client.scores(*w), queries)
            after = read_counters(metrics_url)
            grouped_s = _timed_pool(args.concurrency, lambda w: client.scores(*w), grouped_requests(queries, pre))
            real, padded, subs = (after[f"mxbai_dispatch_{n}"] - before[f"mxbai_dispatch_{n}"]
                                  for n in ("real_tokens", "padded_tokens", "sub_batches"))
            ratio = f"{padded / real:.3f}" if real else "n/a (no dispatch counters)"
            print(f"| {label} | {real:.0f} | {ratio} | {subs:.0f} | {mixed_s:.2f} | {grouped_s:.2f} | "
                  f"{grouped_s / mixed_s:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    from .script import script_main

    raise SystemExit(script_main(__doc__, add_arguments, run))
