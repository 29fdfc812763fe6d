"""AIPerf on the gateway's Cohere, TEI and NIM endpoints, beside httpx and the gRPC client on the same server: CSV/JSON, a plot, a table.

AIPerf (`aiperf` on PyPI, NVIDIA's successor to genai-perf) needs numpy 2 and transformers 5, so it
lives in its own virtualenv, created on first use (default .venv-aiperf), as Model Analyzer does.
It runs offline: its tokenizer is the local checkpoint directory (never a hub name).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .script import add_standin_arguments
from .workload import LENGTH_SIGMAS, QUERY, documents_for, length_moments

ENDPOINT_TYPES = ("cohere-rankings", "hf-tei-rankings", "nim-rankings")
AIPERF_REQUIREMENT = "aiperf==0.13.0"
GRPC_PATH = "grpc client"
HTTPX_PATH = "httpx /v1/ranking"
# perf/workload's QUERY is 7 Qwen2.5 tokens; AIPerf's synthetic queries get the same length.
QUERY_TOKENS = 7


@dataclass(frozen=True)
class Point:
    """One run: a path (an AIPerf endpoint type or the gRPC client) at one concurrency."""

    path: str
    concurrency: int
    requests: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests_per_s: float


def ensure_aiperf(venv: Path) -> Path:
    """The aiperf executable of `venv`, installed there first if it is not."""
    binary = venv / "bin" / "aiperf"
    if not binary.is_file():
        print(f"installing {AIPERF_REQUIREMENT} into {venv} (once; its own environment: numpy 2, transformers 5)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", AIPERF_REQUIREMENT], check=True)
    return binary


def aiperf_command(binary: Path, endpoint_type: str, *, url: str, model: str, tokenizer: Path, passages: int,
                   tokens: tuple[int, int], concurrency: int, requests: int, out: Path) -> list[str]:
    """`aiperf profile` for one endpoint type and concurrency: `passages` per request, token lengths normal(mean, std)."""
    mean, std = tokens
    return [
        str(binary), "profile", "--endpoint-type", endpoint_type, "--url", url, "--model", model,
        "--tokenizer", str(tokenizer.resolve()),
        "--rankings-passages-mean", str(passages), "--rankings-passages-stddev", "0",
        "--rankings-passages-prompt-token-mean", str(mean), "--rankings-passages-prompt-token-stddev", str(std),
        "--rankings-query-prompt-token-mean", str(QUERY_TOKENS), "--rankings-query-prompt-token-stddev", "0",
        "--concurrency", str(concurrency), "--request-count", str(requests), "--warmup-request-count", str(concurrency),
        "--random-seed", "0", "--artifact-dir", str(out), "--ui-type", "none",
        # Scraping /metrics and polling for GPUs take CPU from the server on a small machine and
        # measure nothing here (the gateway's metrics are Prometheus counters anyway).
        "--no-server-metrics", "--no-gpu-telemetry",
    ]


def read_aiperf(path: str, concurrency: int, export: Path) -> Point:
    """A Point from AIPerf's profile_export_aiperf.json."""
    data = json.loads(export.read_text())
    latency = data["request_latency"]
    return Point(path, concurrency, int(data["request_count"]["avg"]),
                 sum(int(e.get("count", 0)) for e in data.get("error_summary") or []),
                 latency["p50"], latency["p90"], latency["p99"], data["request_throughput"]["avg"])


def run_aiperf(command: list[str], path: str, concurrency: int, out: Path) -> Point:
    out.mkdir(parents=True, exist_ok=True)
    print("$ " + " ".join(command), flush=True)
    with open(out / "console.txt", "wb") as console:  # AIPerf's tables, kept beside its CSV/JSON
        completed = subprocess.run(command, stdout=console, stderr=subprocess.STDOUT)
    if completed.returncode != 0:
        tail = (out / "console.txt").read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"aiperf exited with {completed.returncode}:\n" + "\n".join(tail))
    return read_aiperf(path, concurrency, out / "profile_export_aiperf.json")


async def closed_loop(path: str, call, *, concurrency: int, requests: int) -> Point:
    """`concurrency` workers share `requests` calls of `call`, after one warm-up call each (AIPerf's loop)."""
    for _ in range(concurrency):
        await call()
    latencies, errors, left = [], [0], [requests]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            start = time.perf_counter()
            try:
                await call()
            except Exception:  # noqa: BLE001 - counted, as AIPerf counts errors
                errors[0] += 1
                continue
            latencies.append((time.perf_counter() - start) * 1e3)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    p50, p90, p99 = np.percentile(latencies, [50, 90, 99]).tolist() if latencies else (float("nan"),) * 3
    return Point(path, concurrency, len(latencies), errors[0], p50, p90, p99, len(latencies) / elapsed)


async def measure_clients(triton: str, gateway: str, model: str, documents: list[str], *, concurrency: int,
                          requests: int) -> list[Point]:
    """The gRPC client, and httpx on the NIM route: the gateway's cost without AIPerf's own client processes."""
    import httpx

    from mxbai_triton.client import NO_RETRY, AsyncRerankClient

    body = {"model": model, "query": {"text": QUERY}, "passages": [{"text": d} for d in documents]}
    async with AsyncRerankClient(triton, model=model, retry=NO_RETRY, timeout=300) as client, \
            httpx.AsyncClient(base_url=gateway, timeout=300, limits=httpx.Limits(max_connections=concurrency)) as http:
        async def via_http():
            (await http.post("/v1/ranking", json=body)).raise_for_status()

        async def via_grpc():
            await client.scores(QUERY, documents)

        return [await closed_loop(HTTPX_PATH, via_http, concurrency=concurrency, requests=requests),
                await closed_loop(GRPC_PATH, via_grpc, concurrency=concurrency, requests=requests)]


def write_results(points: list[Point], out: Path, title: str) -> tuple[Path, Path, str]:
    """summary.csv, summary.json, a latency-vs-throughput plot, and the Markdown table (returned)."""
    rows = [asdict(p) for p in points]
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.json").write_text(json.dumps({"title": title, "points": rows}, indent=2))
    table = "\n".join([
        f"# {title}", "", "| path | concurrency | requests | errors | p50 ms | p90 ms | p99 ms | req/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *(f"| {p.path} | {p.concurrency} | {p.requests} | {p.errors} | {p.p50_ms:.1f} | {p.p90_ms:.1f} | "
          f"{p.p99_ms:.1f} | {p.requests_per_s:.2f} |" for p in points),
    ]) + "\n"
    (out / "summary.md").write_text(table)
    return out / "summary.csv", _plot(points, out / "latency_vs_throughput.png", title), table


def _plot(points: list[Point], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name in dict.fromkeys(p.path for p in points):
        mine = sorted((p for p in points if p.path == name), key=lambda p: p.concurrency)
        x = [p.requests_per_s for p in mine]
        line = ax.plot(x, [p.p50_ms for p in mine], "o-", label=f"{name} p50")[0]
        ax.plot(x, [p.p99_ms for p in mine], "^:", color=line.get_color(), label=f"{name} p99")
        for p in mine:
            ax.annotate(f"c={p.concurrency}", (p.requests_per_s, p.p50_ms), textcoords="offset points", xytext=(4, -12),
                        fontsize=7)
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel("request latency (ms, log scale)")
    ax.set_yscale("log")  # concurrency 1 and 16 differ by an order of magnitude
    ax.set_title("\n".join(textwrap.wrap(title, 95)), fontsize=8)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", default=None,
                        help="URL of a running gateway (then --triton and --tokenizer too); default: serve the --size stand-in")
    parser.add_argument("--triton", default=None, help="gRPC host:port of the gateway's Triton (the gRPC client's path)")
    parser.add_argument("--tokenizer", default=None, help="local checkpoint directory with tokenizer.json (AIPerf, offline)")
    parser.add_argument("--model", default=None, help="ensemble name (default: the one rerank ensemble Triton serves)")
    add_standin_arguments(parser)
    parser.add_argument("--endpoint-types", default=",".join(ENDPOINT_TYPES), help="AIPerf endpoint types to run, comma-separated")
    parser.add_argument("--concurrency", default="1,16", help="comma-separated")
    parser.add_argument("--passages", type=int, default=10, help="passages per request")
    parser.add_argument("--passage-tokens", type=int, default=60, help="tokens per passage (the median for mixed lengths)")
    parser.add_argument("--lengths", default="uniform", choices=["uniform", *LENGTH_SIGMAS],
                        help="passage lengths as perf/workload draws them (AIPerf gets their mean and deviation)")
    parser.add_argument("--requests", type=int, default=160, help="requests per run (plus one warm-up per worker)")
    parser.add_argument("--venv", default=".venv-aiperf", help="AIPerf's virtualenv, created on first use")
    parser.add_argument("--out", default="artifacts/aiperf", help="where AIPerf writes its CSV/JSON and the plot goes")


def run(args: argparse.Namespace) -> int:
    types = [t.strip() for t in args.endpoint_types.split(",") if t.strip()]
    unknown = sorted(set(types) - set(ENDPOINT_TYPES))
    if unknown:
        raise ValueError(f"unknown endpoint type(s) {', '.join(unknown)}; choose from {', '.join(ENDPOINT_TYPES)}")
    if args.gateway and not (args.triton and args.tokenizer):
        raise ValueError("--gateway needs --triton (the gRPC client's server) and --tokenizer (a local checkpoint directory)")
    binary = ensure_aiperf(Path(args.venv))
    if args.gateway:
        return _benchmark(args, binary, types, args.gateway, args.triton, Path(args.tokenizer), "running servers")
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.gateway.process import GatewayProcess
    from mxbai_triton.model_repository.generate import generate_repository
    from mxbai_triton.model_repository.server import TritonServer

    from .compare import prepare

    checkpoint, export = prepare(args.size, Path(args.workdir))
    repository = generate_repository(Path(args.workdir) / "aiperf-repository", ModelSpec.load(export), target="portable",
                                     name="reranker", export_dir=export)
    with TritonServer.on_free_ports(repository, stop_grace=0) as server, GatewayProcess(server.grpc_url, None) as gateway:
        return _benchmark(args, binary, types, gateway.url, server.grpc_url, checkpoint, f"{args.size} stand-in, portable")


def _benchmark(args, binary: Path, types: list[str], gateway: str, triton: str, tokenizer: Path, served: str) -> int:
    from mxbai_triton.client.discovery import choose_model

    model = choose_model([triton], args.model)
    tokens = length_moments(args.lengths, args.passage_tokens)
    documents = documents_for(args.passages, args.lengths, args.passage_tokens)
    out = Path(args.out)
    points = []
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        for endpoint_type in types:
            run_dir = out / f"{endpoint_type}-c{concurrency}"
            points.append(run_aiperf(aiperf_command(
                binary, endpoint_type, url=gateway, model=model, tokenizer=tokenizer, passages=args.passages,
                tokens=tokens, concurrency=concurrency, requests=args.requests, out=run_dir), endpoint_type, concurrency, run_dir))
        points += asyncio.run(measure_clients(triton, gateway, model, documents, concurrency=concurrency, requests=args.requests))
    title = (f"AIPerf vs httpx vs gRPC client: {model} ({served}), {args.passages} passages x {tokens[0]}±{tokens[1]} tokens "
             f"({args.lengths}), {args.requests} requests per run, {time.strftime('%Y-%m-%d')}")
    csv_path, png, table = write_results(points, out, title)
    print(table)
    print(f"wrote {csv_path}, {out / 'summary.json'}, {png}; AIPerf's own CSV/JSON under {out}/<endpoint-type>-c<N>/")
    return 0


if __name__ == "__main__":
    from .script import script_main

    raise SystemExit(script_main(__doc__, add_arguments, run))
