"""CLI of the perf stage: `perf` runs a perf_analyzer sweep and writes CSV, plot and summary."""

from __future__ import annotations

import argparse
from pathlib import Path

from .workload import LENGTH_SIGMAS


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("perf", help="perf_analyzer sweep over concurrency: CSV, PNG plot, Markdown summary")
    p.add_argument("--url", default="127.0.0.1:8001", help="host:port of the server (gRPC by default)")
    p.add_argument("--model", required=True, help="ensemble name")
    p.add_argument("--protocol", default="grpc", choices=["grpc", "http"])
    p.add_argument("--docs", type=int, default=100, help="documents per request")
    p.add_argument("--doc-tokens", type=int, default=256, help="tokens per document (the median for mixed lengths)")
    p.add_argument("--lengths", default="uniform", choices=["uniform", *LENGTH_SIGMAS],
                   help="document lengths: all equal, or lognormal around --doc-tokens like retrieved chunks")
    p.add_argument("--concurrency", default="1:16:2", help="perf_analyzer range start:end:step")
    p.add_argument("--measurement-ms", type=int, default=5000, help="measurement window per trial")
    p.add_argument("--stability", type=int, default=20, help="percent by which trials may differ (perf_analyzer)")
    p.add_argument("--out", default="artifacts/perf", help="output directory")
    p.set_defaults(handler=_perf)


def _perf(args) -> int:
    from .analyzer import plot, read_points, run_sweep, summary

    out = Path(args.out)
    csv_path = run_sweep(
        args.url, args.model, out, docs=args.docs, doc_tokens=args.doc_tokens, lengths=args.lengths,
        concurrency=args.concurrency, protocol=args.protocol, measurement_ms=args.measurement_ms,
        stability=args.stability,
    )
    points = read_points(csv_path)
    png = plot(points, args.docs, out / "latency_vs_throughput.png",
               f"{args.model}: {args.docs} docs x ~{args.doc_tokens} tokens ({args.lengths})")
    text = summary(points, model=args.model, docs=args.docs, doc_tokens=args.doc_tokens, lengths=args.lengths)
    (out / "summary.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {csv_path}, {png}, {out / 'summary.md'}")
    return 0
