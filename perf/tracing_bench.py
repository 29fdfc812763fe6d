"""What OpenTelemetry tracing costs at concurrency 1, one run: two gateway + Triton stacks on the same repository, traces
off and on (every request traced, exported to an OTLP receiver in this process), requests interleaved in blocks; the
p50 ratio, the cost of the off path in the gateway, and the trace tree of one request."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import timeit
from pathlib import Path

from .compare import standin_repository
from .otlp_receiver import OTLPReceiver, tree
from .script import add_standin_arguments
from .workload import LENGTH_SIGMAS, QUERY, documents_for


@contextlib.contextmanager
def _stack(repository: Path, env: dict[str, str]):
    """Triton and the gateway as `serve --api-port` runs them, with the OTEL_* variables `env` (none: traces off)."""
    from mxbai_triton.gateway.process import GatewayProcess
    from mxbai_triton.model_repository.server import TritonServer
    from mxbai_triton.model_repository.trace_config import trace_args, trace_settings

    settings = trace_args(trace_settings(env, behind_gateway=True))
    with TritonServer.on_free_ports(repository, stop_grace=0, env=env, extra_args=settings) as server, \
            GatewayProcess(server.grpc_url, "reranker", env=env) as gateway:
        yield gateway


def _latencies(client, body: dict, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        client.post("/v2/rerank", json=body).raise_for_status()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def off_path_us(repeat: int = 20000) -> float:
    """Microseconds per request of the gateway's telemetry with no tracer (what every request pays with traces off)."""
    from mxbai_triton.core.telemetry import Timings
    from mxbai_triton.gateway.telemetry import Exchange

    def one():
        exchange = Exchange("0123456789abcdef", "cohere")
        exchange.begin({}, "/v2/rerank")
        for name in ("authorize", "parse", "admit", "score", "respond"):
            with exchange.phase(name):
                pass
        exchange.trace_headers()
        exchange.scored("reranker", "interactive", 100, 25000, Timings())
        exchange.finish(200, None, log=False)
        exchange.headers()

    return timeit.timeit(one, number=repeat) / repeat * 1e6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_standin_arguments(parser, size="tiny")
    parser.add_argument("--docs", type=int, default=100, help="documents per request")
    parser.add_argument("--tokens", type=int, default=250, help="median tokens per document")
    parser.add_argument("--lengths", default="lognormal-0.6", choices=["uniform", *LENGTH_SIGMAS], help="document lengths")
    parser.add_argument("--blocks", type=int, default=8, help="blocks per stack, alternating off/on")
    parser.add_argument("--per-block", type=int, default=25, help="requests per block")


def run(args: argparse.Namespace) -> int:
    import httpx

    repository = standin_repository(args.size, Path(args.workdir), "tracing-bench-repository")
    body = {"model": "reranker", "query": QUERY, "documents": documents_for(args.docs, args.lengths, args.tokens, seed=7)}
    with OTLPReceiver() as receiver, _stack(repository, {}) as off, _stack(repository, {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "rerank"}) as on, \
            httpx.Client(base_url=off.url, timeout=300) as c_off, httpx.Client(base_url=on.url, timeout=300) as c_on:
        clients = {"off": c_off, "on": c_on}
        for client in clients.values():
            _latencies(client, body, 3)  # warm-up: connections, first config read, ONNX Runtime's first runs
        samples = {name: [] for name in clients}
        block_ratios = []
        for block in range(args.blocks):  # alternating order, so drift of the machine hits both alike
            order = list(clients) if block % 2 == 0 else list(clients)[::-1]
            medians = {}
            for name in order:
                got = _latencies(clients[name], body, args.per_block)
                samples[name] += got
                medians[name] = statistics.median(got)
            block_ratios.append(medians["on"] / medians["off"])
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        c_on.post("/v2/rerank", json=body, headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01",
                                                    "x-request-id": "one-traced-request"}).raise_for_status()
        spans = receiver.wait_for(trace_id, lambda s: {"respond", "dispatch"} <= {x.name for x in s}
                                  and sum(x.name == "compute" for x in s) >= 2, limit=30)
        spans_per_request = len(receiver.spans) / (args.blocks * args.per_block + 4)

    p50 = {name: statistics.median(s) for name, s in samples.items()}
    mean = {name: statistics.fmean(s) for name, s in samples.items()}
    off_us = off_path_us()
    print(f"tracing off vs on: {args.size} stand-in, portable target (fp32, ONNX Runtime CPU), {args.docs} docs "
          f"({args.lengths}, median {args.tokens} tokens), c=1 through /v2/rerank, {args.blocks} x {args.per_block} "
          f"requests per stack, {time.strftime('%Y-%m-%d')}")
    print("| traces | p50 ms | mean ms |\n|---|---:|---:|")
    for name in clients:
        print(f"| {name} | {p50[name]:.2f} | {mean[name]:.2f} |")
    print(f"on/off: p50 x{p50['on'] / p50['off']:.3f}, mean x{mean['on'] / mean['off']:.3f}; per-block p50 ratios "
          f"{min(block_ratios):.3f}..{max(block_ratios):.3f}; {spans_per_request:.1f} spans exported per request")
    print(f"off path in the gateway: {off_us:.1f} us per request = {off_us / 1e3 / p50['off'] * 100:.3f} % of the p50")
    print("\ntrace of one request (x-request-id one-traced-request):")
    print(tree(spans))
    return 0


if __name__ == "__main__":
    from .script import script_main

    raise SystemExit(script_main(__doc__, add_arguments, run))
