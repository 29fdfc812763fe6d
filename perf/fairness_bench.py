"""Fair scheduling on the served path: 3-document and 100-document requests during a 1000-document one, the bulk
request's slowdown, and a small request right after abandoned bulk requests (portable target, one run)."""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .compare import prepare
from .script import add_standin_arguments
from .workload import LENGTH_SIGMAS, QUERY, mixed_documents, synthetic_documents

POLICIES = {
    "fair": {},  # the spec's defaults
    # Every request sends all its sub-batches at once: the first-come-first-served queue before fair scheduling.
    "all-at-once": {"interactive_max_tokens": 1 << 40},
}


def scorer_execution(grpc_url: str, model: str) -> tuple[int, float]:
    """(executions, seconds of compute) of `model` so far, from Triton's statistics."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(grpc_url) as client:
        stats = client.get_inference_statistics(model).model_stats[0]
        return stats.execution_count, stats.inference_stats.compute_infer.ns / 1e9


@dataclass
class Background:
    """A request running in a thread; `seconds` once it is done."""

    thread: threading.Thread
    started: float
    seconds: float | None = None
    error: BaseException | None = None

    @classmethod
    def start(cls, fn) -> "Background":
        job = cls(threading.Thread(target=lambda: None), time.perf_counter())

        def run():
            try:
                fn()
            except BaseException as error:  # noqa: BLE001 - reported by the caller
                job.error = error
            job.seconds = time.perf_counter() - job.started

        job.thread = threading.Thread(target=run, daemon=True)
        job.thread.start()
        return job

    @property
    def running(self) -> bool:
        return self.thread.is_alive()


def latencies_while(job: Background, fn, *, delay: float = 0.0) -> list[float]:
    """Seconds of each `fn()` sent one after another while `job` runs (after `delay`)."""
    time.sleep(delay)
    samples = []
    while job.running:
        start = time.perf_counter()
        fn()
        if job.running or not samples:  # a request that outlived the bulk one still waited for it
            samples.append(time.perf_counter() - start)
    return samples


def timed(fn, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def pct(samples: list[float], q: int) -> float:
    """q-th percentile in ms (nearest rank)."""
    ordered = sorted(samples)
    return 1e3 * ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_standin_arguments(parser)
    parser.add_argument("--bulk-docs", type=int, default=1000, help="documents of the bulk request")
    parser.add_argument("--median", type=int, default=250, help="median document tokens (lognormal, sigma 0.6)")
    parser.add_argument("--outliers", type=int, default=2, help="8k-token documents among the bulk request's")
    parser.add_argument("--idle-requests", type=int, default=30, help="3-document requests timed on the idle server")
    parser.add_argument("--policies", default=",".join(POLICIES), help=f"of {', '.join(POLICIES)}")
    parser.add_argument("--export", default=None, help="an existing export directory instead of the --size stand-in")


def run(args: argparse.Namespace) -> int:
    from mxbai_triton.client import NO_RETRY, RerankClient, RerankError
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.core.serving import ServingLimits
    from mxbai_triton.model_repository.generate import generate_repository
    from mxbai_triton.model_repository.server import TritonServer, read_counters

    workdir = Path(args.workdir)
    export = Path(args.export) if args.export else prepare(args.size, workdir)[1]
    small = synthetic_documents(3, 40, seed=7)
    hundred = mixed_documents(100, LENGTH_SIGMAS["lognormal-0.6"], median=args.median, seed=5)
    bulk = mixed_documents(args.bulk_docs, LENGTH_SIGMAS["lognormal-0.6"], median=args.median, outliers=args.outliers, seed=1)
    print(f"fairness benchmark: {args.export or args.size + ' stand-in'}, portable target, {time.strftime('%Y-%m-%d')}; "
          f"bulk = {args.bulk_docs} documents (median {args.median} tokens, sigma 0.6, {args.outliers} of 8k)", flush=True)
    for policy in [p for p in args.policies.split(",") if p]:
        spec = ModelSpec.load(export)
        repository = generate_repository(workdir / f"fairness-{policy}", spec, target="portable", name="reranker",
                                         export_dir=export, limits=ServingLimits.for_model(spec, **POLICIES[policy]))
        with TritonServer.on_free_ports(repository, stop_grace=0) as server, \
                RerankClient(server.grpc_url, model="reranker", timeout=600) as client, \
                RerankClient(server.grpc_url, model="reranker", timeout=600) as bulk_client:
            client.scores(QUERY, small)
            bulk_client.scores(QUERY, bulk)  # warm-up: ONNX Runtime allocates for these shapes once
            idle = timed(lambda: client.scores(QUERY, small), args.idle_requests)
            idle_100 = timed(lambda: client.scores(QUERY, hundred), 5)
            alone = timed(lambda: bulk_client.scores(QUERY, bulk), 1)[0]

            executions, compute = scorer_execution(server.grpc_url, "reranker_scorer")
            job = Background.start(lambda: bulk_client.scores(QUERY, bulk))
            during = latencies_while(job, lambda: client.scores(QUERY, small))
            job.thread.join()
            executions_after, compute_after = scorer_execution(server.grpc_url, "reranker_scorer")
            mean_exec = (compute_after - compute) / max(1, executions_after - executions)
            with_small = job.seconds

            job = Background.start(lambda: bulk_client.scores(QUERY, bulk))
            during_100 = latencies_while(job, lambda: client.scores(QUERY, hundred), delay=1.0)
            job.thread.join()

            before = read_counters(server.metrics_url)
            abandoned = []
            for _ in range(3):
                def give_up():
                    with RerankClient(server.grpc_url, model="reranker", timeout=1.0, retry=NO_RETRY) as c:
                        c.scores(QUERY, bulk)
                abandoned.append(Background.start(give_up))
            for job in abandoned:
                job.thread.join()
            assert all(isinstance(job.error, RerankError) for job in abandoned), [job.error for job in abandoned]
            after_abandoned = timed(lambda: client.scores(QUERY, small), 5)
            after = read_counters(server.metrics_url)
            sent = after["mxbai_dispatch_sub_batches"] - before["mxbai_dispatch_sub_batches"] - 5

        print(f"\n### policy: {policy}\n")
        print("| measure | value |\n|---|---:|")
        rows = [
            ("3-doc idle p50 / p90 ms", f"{pct(idle, 50):.0f} / {pct(idle, 90):.0f}"),
            ("scorer mean execution during the bulk request ms", f"{1e3 * mean_exec:.0f}"),
            (f"3-doc during bulk p50 / p90 / max ms (n={len(during)})",
             f"{pct(during, 50):.0f} / {pct(during, 90):.0f} / {pct(during, 100):.0f}"),
            ("goal: p90 <= idle p50 + 2 x mean execution ms", f"{pct(idle, 50) + 2e3 * mean_exec:.0f}"),
            ("bulk alone s / with the 3-doc stream s / slowdown", f"{alone:.2f} / {with_small:.2f} / {with_small / alone - 1:+.1%}"),
            ("100-doc idle p50 ms / during bulk p50 ms", f"{pct(idle_100, 50):.0f} / {pct(during_100, 50):.0f} (n={len(during_100)})"),
            ("3-doc right after 3 abandoned bulk requests (1 s deadline) p50 / max ms",
             f"{pct(after_abandoned, 50):.0f} / {pct(after_abandoned, 100):.0f}"),
            ("sub-batches the abandoned requests sent / skipped",
             f"{sent:.0f} / {after['mxbai_dispatch_skipped_sub_batches'] - before['mxbai_dispatch_skipped_sub_batches']:.0f}"),
        ]
        for name, value in rows:
            print(f"| {name} | {value} |", flush=True)
    return 0


if __name__ == "__main__":
    from .script import script_main

    raise SystemExit(script_main(__doc__, add_arguments, run))
