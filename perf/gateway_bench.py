"""What the HTTP gateway adds over the gRPC client: p50 latency at concurrency 1 and throughput at 16, one run, same server."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from .compare import standin_repository
from .script import add_standin_arguments
from .workload import QUERY, synthetic_documents


async def _latencies(call, count: int) -> list[float]:
    await call()  # warm-up: connections, first config read
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


async def _throughput(call, concurrency: int, seconds: float) -> float:
    """Requests per second of `concurrency` closed-loop workers for `seconds`."""
    done = [0]

    async def worker(deadline: float) -> None:
        while time.monotonic() < deadline:
            await call()
            done[0] += 1

    start = time.monotonic()
    await asyncio.gather(*(worker(start + seconds) for _ in range(concurrency)))
    return done[0] / (time.monotonic() - start)


async def measure(grpc_url: str, gateway_url: str, model: str, *, docs: int, tokens: int, requests: int,
                  concurrency: int, seconds: float) -> dict[str, dict[str, float]]:
    import httpx

    from mxbai_triton.client import NO_RETRY, AsyncRerankClient

    documents = synthetic_documents(docs, tokens, seed=7)
    body = {"model": model, "query": QUERY, "documents": documents}
    limits = httpx.Limits(max_connections=concurrency)
    async with AsyncRerankClient(grpc_url, model=model, retry=NO_RETRY, timeout=120) as client, \
            httpx.AsyncClient(base_url=gateway_url, timeout=120, limits=limits) as http:
        async def via_grpc():
            await client.scores(QUERY, documents)

        async def via_gateway():
            (await http.post("/v2/rerank", json=body)).raise_for_status()

        calls = {"grpc client": via_grpc, "gateway /v2/rerank": via_gateway}
        samples = {name: [] for name in calls}
        for _ in range(4):  # interleaved blocks, so drift of the machine hits both alike
            for name, call in calls.items():
                samples[name] += await _latencies(call, requests // 4)
        out = {name: {"p50 ms": statistics.median(s)} for name, s in samples.items()}
        for name, call in calls.items():
            out[name][f"req/s at c={concurrency}"] = await _throughput(call, concurrency, seconds)
        return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_standin_arguments(parser)
    parser.add_argument("--docs", type=int, default=10, help="documents per request")
    parser.add_argument("--tokens", type=int, default=60, help="tokens per document")
    parser.add_argument("--requests", type=int, default=200, help="requests per path for the p50")
    parser.add_argument("--concurrency", type=int, default=16, help="client concurrency of the throughput runs")
    parser.add_argument("--seconds", type=float, default=20.0, help="per path, for the throughput")


def run(args: argparse.Namespace) -> int:
    from mxbai_triton.gateway.process import GatewayProcess
    from mxbai_triton.model_repository.server import TritonServer

    repository = standin_repository(args.size, Path(args.workdir), "gateway-bench-repository")
    with TritonServer.on_free_ports(repository, stop_grace=0) as server, GatewayProcess(server.grpc_url, "reranker") as gateway:
        result = asyncio.run(measure(server.grpc_url, gateway.url, "reranker", docs=args.docs, tokens=args.tokens,
                                     requests=args.requests, concurrency=args.concurrency, seconds=args.seconds))
    print(f"gateway vs gRPC client: {args.size} stand-in, portable target, {args.docs} docs x {args.tokens} tokens, "
          f"{time.strftime('%Y-%m-%d')} (load generator, gateway and Triton share the same cores)")
    keys = list(next(iter(result.values())))
    print("| path | " + " | ".join(keys) + " |\n|---|" + "---:|" * len(keys))
    for name, row in result.items():
        print(f"| {name} | " + " | ".join(f"{row[k]:.2f}" for k in keys) + " |")
    grpc, http = result.values()
    print(f"gateway adds {http['p50 ms'] - grpc['p50 ms']:+.2f} ms at p50 (x{http['p50 ms'] / grpc['p50 ms']:.2f}); "
          f"throughput x{http[keys[1]] / grpc[keys[1]]:.2f} of the gRPC client's")
    return 0


if __name__ == "__main__":
    from .script import script_main

    raise SystemExit(script_main(__doc__, add_arguments, run))
