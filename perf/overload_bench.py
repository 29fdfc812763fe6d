"""Overload and restarts, one run: retries at 2x capacity (requests that reach Triton per request made), load shedding
at 3x through the gateway (accepted p99 vs p99 at capacity, goodput, refusal latency), a rolling restart of two servers
under load (failed requests, p99 during the roll)."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import numpy as np

from .compare import prepare
from .script import add_standin_arguments
from .workload import QUERY, synthetic_documents


def _p(values, q: float) -> float:
    return float(np.percentile(values, q)) * 1e3 if len(values) else float("nan")


async def _closed_loop(call, workers: int, seconds: float) -> tuple[float, list[float]]:
    """Requests per second of `workers` back-to-back callers, and their latencies (s); failures raise."""
    latencies: list[float] = []
    end = time.monotonic() + seconds

    async def worker():
        while time.monotonic() < end:
            start = time.monotonic()
            await call()
            latencies.append(time.monotonic() - start)

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return len(latencies) / (time.monotonic() - start), latencies


async def _open_loop(call, rate: float, seconds: float) -> list[tuple[str, float]]:
    """Arrivals every 1/rate s for `seconds`, whatever the answers: (outcome, latency s) of each."""
    outcomes: list[tuple[str, float]] = []

    async def one():
        start = time.monotonic()
        outcome = await call()
        outcomes.append((outcome, time.monotonic() - start))

    tasks, start = [], time.monotonic()
    for i in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        tasks.append(asyncio.ensure_future(one()))
    await asyncio.gather(*tasks)
    return outcomes


def _dispatched(server, model: str) -> int:
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(server.grpc_url)
    try:
        stats = client.get_inference_statistics(f"{model}_tokenizer").model_stats[0].inference_stats
        return stats.success.count + stats.fail.count
    finally:
        client.close()


async def retries_at_twice_capacity(server, model: str, documents: list[str], args) -> dict:
    """Callers with the default RetryPolicy at 2x the server's capacity, Triton's queue bound refusing the excess."""
    from mxbai_triton.client import AsyncRerankClient, RerankError, RetryPolicy

    async with AsyncRerankClient(server.grpc_url, model=model, timeout=args.deadline, retry=RetryPolicy()) as client:
        capacity, _ = await _closed_loop(lambda: client.scores(QUERY, documents), args.workers, args.seconds)
        # The budget counts the requests of its last window: let the capacity run leave it, so that the ratio is the
        # overload's own.
        await asyncio.sleep(client._pool.policy.budget_window)
        before_tries, before_triton = client.stats.attempts, _dispatched(server, model)

        async def call():
            try:
                await client.scores(QUERY, documents)
                return "ok"
            except RerankError as error:
                return error.kind.value

        outcomes = await _open_loop(call, 2 * capacity, args.seconds)
        time.sleep(1.0)  # Triton records a python model's statistics after its answer
        tries = client.stats.attempts - before_tries
        executed = _dispatched(server, model) - before_triton
        return {"capacity req/s": capacity, "requests made": len(outcomes), "tries sent (client)": tries,
                "run by Triton": executed, "tries / requests": tries / len(outcomes),
                "run by Triton / requests": executed / len(outcomes),
                "answered": sum(o == "ok" for o, _ in outcomes), "retries refused by the budget": client.stats.budget_refused}


async def shedding_at_three_times(gateway_url: str, model: str, documents: list[str], args) -> dict:
    """No retries: what the admission bound does for the requests it accepts, and how fast it refuses the rest."""
    import httpx

    body = {"model": model, "query": QUERY, "documents": documents}
    async with httpx.AsyncClient(base_url=gateway_url, timeout=120, limits=httpx.Limits(max_connections=200)) as http:
        async def scored():
            (await http.post("/v2/rerank", json=body)).raise_for_status()

        capacity, at_capacity = await _closed_loop(scored, args.workers, args.seconds)

        async def call():
            try:
                response = await http.post("/v2/rerank", json=body)
            except httpx.HTTPError as error:  # e.g. a connection reset past uvicorn's --api-max-connections
                return type(error).__name__
            return {200: "ok", 503: "refused"}.get(response.status_code, str(response.status_code))

        started = time.monotonic()
        outcomes = await _open_loop(call, 3 * capacity, args.seconds)
        elapsed = time.monotonic() - started  # the last answers come after the arrivals stop
    accepted = [t for o, t in outcomes if o == "ok"]
    refused = [t for o, t in outcomes if o == "refused"]
    return {"capacity req/s": capacity, "p99 at capacity ms": _p(at_capacity, 99), "offered req/s": 3 * capacity,
            "accepted p99 ms": _p(accepted, 99), "accepted p99 / capacity p99": _p(accepted, 99) / _p(at_capacity, 99),
            "goodput / capacity": len(accepted) / elapsed / capacity, "refused": len(refused),
            "refusal p99 ms": _p(refused, 99), "other": len(outcomes) - len(accepted) - len(refused)}


async def rolling_restart(servers, gateway_url: str, model: str, documents: list[str], args) -> dict:
    """Steady closed-loop load over the client's endpoint list and the gateway while each server is drained and restarted."""
    import httpx

    from mxbai_triton.client import AsyncRerankClient, RerankError, RetryPolicy
    from mxbai_triton.model_repository.drain import drain

    failed, latencies = [0], {"steady": [], "roll": []}
    phase = ["steady"]
    stop = asyncio.Event()
    body = {"model": model, "query": QUERY, "documents": documents}
    urls = [s.grpc_url for s in servers]
    async with AsyncRerankClient(urls, model=model, timeout=args.deadline, retry=RetryPolicy(cooldown=0.5)) as client, \
            httpx.AsyncClient(base_url=gateway_url, timeout=120) as http:
        async def grpc():
            await client.scores(QUERY, documents)

        async def gateway():
            (await http.post("/v2/rerank", json=body)).raise_for_status()

        async def worker(call):
            while not stop.is_set():
                start = time.monotonic()
                try:
                    await call()
                    latencies[phase[0]].append(time.monotonic() - start)
                except (RerankError, httpx.HTTPError):
                    failed[0] += 1

        workers = [asyncio.ensure_future(worker(c)) for c in (grpc, gateway) for _ in range(args.workers // 2)]
        await asyncio.sleep(args.seconds)
        phase[0] = "roll"
        for server in servers:
            await asyncio.to_thread(drain, server, 120)
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
        stop.set()
        await asyncio.gather(*workers)
    return {"requests": sum(map(len, latencies.values())) + failed[0], "failed": failed[0],
            "p99 steady ms": _p(latencies["steady"], 99), "p99 during the roll ms": _p(latencies["roll"], 99),
            "roll p99 / steady p99": _p(latencies["roll"], 99) / _p(latencies["steady"], 99)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_standin_arguments(parser, size="tiny")
    parser.add_argument("--docs", type=int, default=10, help="documents per request")
    parser.add_argument("--tokens", type=int, default=60, help="tokens per document")
    parser.add_argument("--workers", type=int, default=16,
                        help="closed-loop callers that measure capacity (the gateway's interactive admission bound)")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each measured phase")
    parser.add_argument("--deadline", type=float, default=10.0, help="the callers' request deadline (s)")


def _table(title: str, row: dict) -> None:
    print(f"\n{title}\n| " + " | ".join(row) + " |\n|" + "---:|" * len(row))
    print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


def run(args: argparse.Namespace) -> int:
    import logging

    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.gateway.process import GatewayProcess
    from mxbai_triton.model_repository.generate import generate_repository
    from mxbai_triton.model_repository.server import TritonServer

    workdir = Path(args.workdir)
    export = prepare(args.size, workdir)[1]
    repository = generate_repository(workdir / "overload-bench-repository", ModelSpec.load(export), target="portable",
                                     name="reranker", export_dir=export)
    documents = synthetic_documents(args.docs, args.tokens, seed=7)
    logging.getLogger("mxbai_triton.client").setLevel(logging.WARNING)  # one line per retried request is the point here
    print(f"overload and restarts: {args.size} stand-in, portable target (fp32, ONNX Runtime on CPU), {args.docs} docs x "
          f"{args.tokens} tokens, {time.strftime('%Y-%m-%d')}; load generator, gateway and Triton share the same cores")
    with TritonServer.on_free_ports(repository, stop_grace=0) as server:
        _table("retries at 2x capacity (gRPC client, default RetryPolicy; Triton's queue bound refuses the excess)",
               asyncio.run(retries_at_twice_capacity(server, "reranker", documents, args)))
        with GatewayProcess(server.grpc_url, "reranker") as gateway:
            _table("load shedding at 3x capacity (gateway, default admission bound, no retries)",
                   asyncio.run(shedding_at_three_times(gateway.url, "reranker", documents, args)))
    servers = [TritonServer.on_free_ports(repository, stop_grace=10) for _ in range(2)]
    try:
        for server in servers:
            server.start()
        with GatewayProcess(",".join(s.grpc_url for s in servers), "reranker", "--api-retry-for", "30") as gateway:
            _table("rolling restart of two servers (client endpoint list + gateway --triton A,B, closed loop)",
                   asyncio.run(rolling_restart(servers, gateway.url, "reranker", documents, args)))
    finally:
        for server in servers:
            server.stop(0)
    return 0


if __name__ == "__main__":
    from .script import script_main

    raise SystemExit(script_main(__doc__, add_arguments, run))
