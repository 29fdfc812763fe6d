"""CLI of the perf stage: `perf sweep` (perf_analyzer) and every benchmark and check of perf/ as `perf NAME`."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from .workload import LENGTH_SIGMAS

# `perf NAME` -> module of perf/ with add_arguments(parser) and run(args); each also runs as
# `python -m mxbai_triton.perf.MODULE` (the GPU kit runs gpu_check that way, without an install).
BENCHMARKS = {
    "compare": ("compare", "reference rank() vs in-process ONNX Runtime vs the Triton ensemble, one run"),
    "served": ("served_bench", "served path on mixed lengths: computed/real tokens, mixed vs grouped, latency"),
    "fairness": ("fairness_bench", "small requests during a 1000-document one, bulk slowdown, abandoned requests"),
    "cost": ("sub_batch_cost", "fit the sub-batch cost model to the portable scorer's executions of a stand-in"),
    "tokenizer": ("tokenizer_bench", "the tokenizer stage vs a bare batched tokenizers encode"),
    "gateway": ("gateway_bench", "what the HTTP rerank gateway adds over the gRPC client"),
    "overload": ("overload_bench", "retries at 2x capacity, load shedding at 3x, a rolling restart of two servers"),
    "tracing": ("tracing_bench", "OpenTelemetry tracing off vs on at concurrency 1, and the trace tree of one request"),
    "aiperf": ("aiperf_bench", "AIPerf (its own venv) on the gateway's Cohere, TEI and NIM endpoints vs the gRPC client"),
    "fp16": ("fp16_check", "fp16/bf16 vs fp32 scores on the real shapes (torch, ONNX Runtime, OpenVINO or emulated)"),
    "cpu-precision": ("cpu_precision", "reference and served fp32/bf16 on the CPU: docs/s vs each precision's matmul peak"),
    "gpu": ("gpu_check", "the GPU check kit: dtype agreement, tokens/s vs the matmul peak, peak memory"),
    "gpu-throughput": ("gpu_throughput", "tokens/s of the PyTorch scorer on a GPU vs its matmul roofline"),
    "onnx-vs-reference": ("onnx_vs_reference", "ONNX Runtime vs the reference package on one checkpoint"),
    "analyze": ("model_analyzer", "write a Triton Model Analyzer config for the scorer (`make analyze` runs it)"),
}
SUBCOMMANDS = ("sweep", *BENCHMARKS)


def register(commands: argparse._SubParsersAction) -> None:
    perf = commands.add_parser("perf", help="benchmarks and checks: perf_analyzer sweep, compare, fp16, gpu, analyze, ...",
                               description=__doc__)
    group = perf.add_subparsers(dest="perf_command", required=True, metavar="NAME")
    _register_sweep(group)
    for name, (module_name, text) in BENCHMARKS.items():
        module = importlib.import_module(f"{__package__}.{module_name}")
        p = group.add_parser(name, help=text, description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(handler=module.run)


def _register_sweep(group: argparse._SubParsersAction) -> None:
    p = group.add_parser("sweep", help="perf_analyzer sweep over concurrency: CSV, PNG plot, Markdown summary")
    p.add_argument("--url", default="127.0.0.1:8001", help="host:port of the server (gRPC by default)")
    p.add_argument("--model", default=None, help="ensemble name (default: the one rerank ensemble the server serves)")
    p.add_argument("--protocol", default="grpc", choices=["grpc", "http"], help="KServe protocol perf_analyzer speaks")
    p.add_argument("--docs", type=int, default=100, help="documents per request")
    p.add_argument("--doc-tokens", type=int, default=256, help="tokens per document (the median for mixed lengths)")
    p.add_argument("--lengths", default="uniform", choices=["uniform", *LENGTH_SIGMAS],
                   help="document lengths: all equal, or lognormal around --doc-tokens like retrieved chunks")
    p.add_argument("--concurrency", default="1:4:1",
                   help="perf_analyzer range start:end:step (widen it on a GPU server, e.g. 1:32:4)")
    p.add_argument("--window-requests", type=int, default=8,
                   help="requests per measurement window (windows are counted in requests, not time, so slow "
                        "requests on a CPU still fill them)")
    p.add_argument("--measurement-ms", type=int, default=None,
                   help="time windows of this many ms instead of --window-requests (perf_analyzer's time_windows)")
    p.add_argument("--stability", type=int, default=30,
                   help="percent by which three windows in a row may differ before a level counts as measured")
    p.add_argument("--max-trials", type=int, default=10, help="windows perf_analyzer tries per level before giving up")
    p.add_argument("--out", default="artifacts/perf", help="output directory")
    p.set_defaults(handler=_perf)


def _perf(args) -> int:
    from mxbai_triton.client.discovery import choose_model

    from .analyzer import plot, read_points, run_sweep, summary

    args.model = choose_model([args.url], args.model, protocol=args.protocol)
    out = Path(args.out)
    csv_path = run_sweep(
        args.url, args.model, out, docs=args.docs, doc_tokens=args.doc_tokens, lengths=args.lengths,
        concurrency=args.concurrency, protocol=args.protocol, window_requests=args.window_requests,
        measurement_ms=args.measurement_ms,
        stability=args.stability, max_trials=args.max_trials,
    )
    points = read_points(csv_path)
    png = plot(points, args.docs, out / "latency_vs_throughput.png",
               f"{args.model}: {args.docs} docs x ~{args.doc_tokens} tokens ({args.lengths})")
    text = summary(points, model=args.model, docs=args.docs, doc_tokens=args.doc_tokens, lengths=args.lengths)
    (out / "summary.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {csv_path}, {png}, {out / 'summary.md'}")
    return 0
