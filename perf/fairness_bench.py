"""Fair scheduling on the served path: small requests during a 1000-document one against the bound of its longest
sub-batch, the spread of its sub-batches' executions, its time alone and under a stream of small requests, and
(without --short) 100-document requests during it and a small request right after abandoned bulk requests."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from .compare import prepare
from .script import add_standin_arguments
from .sub_batch_cost import ScorerTimer
from .workload import LENGTH_SIGMAS, QUERY, mixed_documents, synthetic_documents

POLICIES = {
    # Bounded bulk turns (the defaults): bulk sub-batches within the target's cost budget.
    "fair": {},
    # Fair share with the interactive plan's sub-batches, on today's scorer queue.
    "unbounded": {"bulk_sub_batch_seconds": 0.0},
    # Fair share as at e038767: unbounded sub-batches, and the scorer's queue with a timeout policy and
    # ragged batching (BEFORE_SCORER_QUEUE), which made Triton's batcher stall and merge across lengths.
    "before": {"bulk_sub_batch_seconds": 0.0},
    # Every request sends all its sub-batches at once: the first-come-first-served queue before fair share.
    "all-at-once": {"interactive_max_tokens": 1 << 40, "bulk_sub_batch_seconds": 0.0},
}
BEFORE_SCORER_QUEUE = {"allow_ragged_batch": True, "default_queue_policy": {
    "default_timeout_microseconds": 60_000_000, "allow_timeout_override": True, "max_queue_size": 512, "timeout_action": "REJECT"}}
SHOWN_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_description(cpuinfo: str = "/proc/cpuinfo") -> str:
    """'MODEL, N cores, FLAGS' of this machine (the flags that decide CPU matmul speed)."""
    model, flags, cores = "unknown CPU", set(), 0
    for line in Path(cpuinfo).read_text().splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        model = value.strip() if key == "model name" else model
        flags = set(value.split()) if key == "flags" else flags
        cores += key == "processor"
    return f"{model}, {cores} cores, {', '.join(f for f in SHOWN_FLAGS if f in flags) or 'no AVX2'}"


class OthersCpu:
    """The share of this machine's CPU time that processes outside this one and its children took (a shared
    machine's noise, reported beside each measurement)."""

    def __init__(self):
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[int, int, int]:
        """(all jiffies, busy jiffies, jiffies of this process tree) so far."""
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        parents, used = {}, {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:  # gone meanwhile
                continue
            after = text.rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            parents[pid], used[pid] = int(after[1]), int(after[11]) + int(after[12])
        ours, frontier = set(), {os.getpid()}
        while frontier:
            ours |= frontier
            frontier = {pid for pid, parent in parents.items() if parent in frontier} - ours
        return sum(fields), sum(fields) - fields[3] - fields[4], sum(used[pid] for pid in ours)

    def share(self) -> float:
        """Others' share of the CPU since this was created."""
        end = self._read()
        total, busy, ours = (b - a for a, b in zip(self.start, end))
        return max(0.0, (busy - ours) / total) if total else 0.0


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


def sub_batch_executions(server, name: str, documents: list[str]) -> list[tuple[int, float]]:
    """(rows, execution seconds) of each sub-batch ensemble `name`'s dispatch plans for `documents`, run one at a time."""
    from mxbai_triton.model_repository.tokenizer_backend import TokenizerCore

    core = TokenizerCore(Path(server.repository) / f"{name}_tokenizer" / "1")
    plan = core.plan([(QUERY, documents, None)])[0]
    with ScorerTimer(server.grpc_url, f"{name}_scorer", dtype=core.serving.scorer_input_dtype) as timer:
        return [(len(batch.rows), timer.seconds(batch.input_ids, batch.attention_mask)) for batch in plan.batches]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_standin_arguments(parser)
    parser.add_argument("--bulk-docs", type=int, default=1000, help="documents of the bulk request")
    parser.add_argument("--median", type=int, default=250, help="median document tokens (lognormal, sigma 0.6)")
    parser.add_argument("--outliers", type=int, default=2, help="8k-token documents among the bulk request's")
    parser.add_argument("--idle-requests", type=int, default=30, help="3-document requests timed on the idle server")
    parser.add_argument("--alone-runs", type=int, default=3, help="bulk requests timed alone per policy (interleaved)")
    parser.add_argument("--policies", default="before,fair", help=f"of {', '.join(POLICIES)}")
    parser.add_argument("--short", action="store_true", help="skip the 100-document stream and the abandoned requests")
    parser.add_argument("--export", default=None, help="an existing export directory instead of the --size stand-in")


def run(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from mxbai_triton.client import RerankClient
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.core.serving import ServingLimits
    from mxbai_triton.model_repository.generate import generate_repository
    from mxbai_triton.model_repository.server import TritonServer

    workdir = Path(args.workdir)
    export = Path(args.export) if args.export else prepare(args.size, workdir)[1]
    policies = [p for p in args.policies.split(",") if p]
    small = synthetic_documents(3, 40, seed=7)
    bulk = mixed_documents(args.bulk_docs, LENGTH_SIGMAS["lognormal-0.6"], median=args.median, outliers=args.outliers, seed=1)
    print(f"fairness benchmark: {args.export or args.size + ' stand-in'}, portable target, fp32, {cpu_description()}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}; bulk = {args.bulk_docs} documents (median {args.median} tokens, sigma 0.6, "
          f"{args.outliers} of 8k)", flush=True)
    spec = ModelSpec.load(export)
    repository = workdir / "fairness"
    shutil.rmtree(repository, ignore_errors=True)  # only this run's ensembles
    for policy in policies:  # one server, one ensemble per policy: measured side by side on the same machine state
        generate_repository(repository, spec, target="portable", name=policy, export_dir=export,
                            limits=ServingLimits.for_model(spec, **POLICIES[policy]))
        if policy == "before":
            _restore_scorer_queue(repository / f"{policy}_scorer" / "config.pbtxt")
    results = {p: {} for p in policies}
    with TritonServer.on_free_ports(repository, stop_grace=0) as server, ExitStack() as stack:
        # Per policy: one client for the bulk request, one for the requests sent beside it.
        clients = {p: [stack.enter_context(RerankClient(server.grpc_url, model=p, timeout=600)) for _ in range(2)]
                   for p in policies}
        for policy, (client, _) in clients.items():
            client.scores(QUERY, small)
            client.scores(QUERY, bulk)  # warm-up: ONNX Runtime allocates for these shapes once
            results[policy]["idle"] = timed(partial(client.scores, QUERY, small), args.idle_requests)
        for _ in range(args.alone_runs):  # interleaved, so that drift of the machine hits every policy alike
            for policy, (client, _) in clients.items():
                others = OthersCpu()
                results[policy].setdefault("alone", []).extend(timed(partial(client.scores, QUERY, bulk), 1))
                results[policy].setdefault("others_alone", []).append(others.share())
        for policy, (client, beside) in clients.items():
            results[policy]["executions"] = sub_batch_executions(server, policy, bulk)
            others = OthersCpu()
            job = Background.start(partial(client.scores, QUERY, bulk))
            results[policy]["during"] = latencies_while(job, partial(beside.scores, QUERY, small))
            job.thread.join()
            results[policy]["with_small"] = job.seconds
            results[policy]["others_with_small"] = others.share()
            if not args.short:
                results[policy].update(_extras(server, policy, client, beside, bulk, small, args.median))
    samples = workdir / f"fairness-{time.strftime('%Y%m%d-%H%M%S')}.json"  # every sample, for later reading
    samples.write_text(json.dumps(results, indent=1), encoding="utf-8")
    _print_table(results, args.short)
    return 0


def _restore_scorer_queue(config_path: Path) -> None:
    """Give a generated scorer config the queue it had at e038767 (BEFORE_SCORER_QUEUE)."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2 as mc

    config = text_format.Parse(config_path.read_text(), mc.ModelConfig())
    for tensor in config.input:
        tensor.allow_ragged_batch = BEFORE_SCORER_QUEUE["allow_ragged_batch"]
    json_format.ParseDict(BEFORE_SCORER_QUEUE["default_queue_policy"], config.dynamic_batching.default_queue_policy)
    config_path.write_text(text_format.MessageToString(config), encoding="utf-8")


def _extras(server, policy: str, client, beside, bulk: list[str], small: list[str], median: int) -> dict:
    """100-document requests during a bulk one; a small request after three abandoned bulk requests."""
    from mxbai_triton.client import NO_RETRY, RerankClient, RerankError
    from mxbai_triton.model_repository.metrics_port import read_counters

    hundred = mixed_documents(100, LENGTH_SIGMAS["lognormal-0.6"], median=median, seed=5)
    out = {"idle_100": timed(lambda: client.scores(QUERY, hundred), 5)}
    job = Background.start(lambda: client.scores(QUERY, bulk))
    out["during_100"] = latencies_while(job, lambda: beside.scores(QUERY, hundred), delay=1.0)
    job.thread.join()
    before = read_counters(server.metrics_url, model=f"{policy}_tokenizer")
    abandoned = []
    for _ in range(3):
        def give_up():
            with RerankClient(server.grpc_url, model=policy, timeout=1.0, retry=NO_RETRY) as impatient:
                impatient.scores(QUERY, bulk)
        abandoned.append(Background.start(give_up))
    for job in abandoned:
        job.thread.join()
    assert all(isinstance(job.error, RerankError) for job in abandoned), [job.error for job in abandoned]
    out["after_abandoned"] = timed(lambda: client.scores(QUERY, small), 5)
    after = read_counters(server.metrics_url, model=f"{policy}_tokenizer")
    out["abandoned_sent"] = after["mxbai_dispatch_sub_batches"] - before["mxbai_dispatch_sub_batches"] - 5
    out["abandoned_skipped"] = after["mxbai_dispatch_skipped_sub_batches"] - before["mxbai_dispatch_skipped_sub_batches"]
    return out


def _print_table(results: dict[str, dict], short: bool) -> None:
    """One column per policy; the bound of a small request's wait is its idle p90 plus the longest bulk sub-batch."""
    rows = {}
    for policy, r in results.items():
        during, alone = r["during"], statistics.median(r["alone"])
        executions = [seconds for _, seconds in r["executions"]]
        several = [seconds for rows, seconds in r["executions"] if rows > 1]
        longest, mean = max(executions), statistics.fmean(executions)
        bound = pct(r["idle"], 90) + 1e3 * longest
        column = {
            "3-doc idle p50 / p90 ms": f"{pct(r['idle'], 50):.0f} / {pct(r['idle'], 90):.0f}",
            "bulk sub-batches: count, executions mean / max ms, max/mean":
                f"{len(executions)}, {1e3 * mean:.0f} / {1e3 * longest:.0f}, {longest / mean:.2f}",
            "sub-batches of more than one row: max ms, max/mean":
                f"{1e3 * max(several):.0f}, {max(several) / statistics.fmean(several):.2f}",
            "expected wait for the running sub-batch E[X²]/2E[X] ms": f"{1e3 * sum(x * x for x in executions) / 2 / sum(executions):.0f}",
            "3-doc during bulk p50 / p90 / max ms (count)":
                f"{pct(during, 50):.0f} / {pct(during, 90):.0f} / {pct(during, 100):.0f} ({len(during)})",
            "bound: idle p90 + longest sub-batch ms; requests over it": f"{bound:.0f}; {sum(1e3 * d > bound for d in during)}",
            "bulk alone s (median of runs) / sum of its executions s":
                f"{alone:.2f} ({', '.join(f'{a:.2f}' for a in r['alone'])}) / {sum(executions):.2f}",
            "bulk with the 3-doc stream s / vs alone": f"{r['with_small']:.2f} / {r['with_small'] / alone:.3f}x",
            "CPU taken by other processes: during the alone runs / the stream run":
                f"{', '.join(f'{x:.0%}' for x in r['others_alone'])} / {r['others_with_small']:.0%}",
        }
        if not short:
            column |= {
                "100-doc idle p50 ms / during bulk p50 ms":
                    f"{pct(r['idle_100'], 50):.0f} / {pct(r['during_100'], 50):.0f} (n={len(r['during_100'])})",
                "3-doc right after 3 abandoned bulk requests (1 s deadline) p50 / max ms":
                    f"{pct(r['after_abandoned'], 50):.0f} / {pct(r['after_abandoned'], 100):.0f}",
                "sub-batches the abandoned requests sent / skipped": f"{r['abandoned_sent']:.0f} / {r['abandoned_skipped']:.0f}",
            }
        for name, value in column.items():
            rows.setdefault(name, {})[policy] = value
    policies = list(results)
    print(f"\n| measure | {' | '.join(policies)} |\n|---|{'---:|' * len(policies)}")
    for name, values in rows.items():
        print(f"| {name} | {' | '.join(values[p] for p in policies)} |")
    for other in ("unbounded", "before"):
        if {"fair", other} <= set(results):
            alone = {p: statistics.median(results[p]["alone"]) for p in ("fair", other)}
            print(f"\nbulk alone, fair vs {other}: {alone['fair'] / alone[other] - 1:+.1%} (what smaller sub-batches cost)")


if __name__ == "__main__":
    from .script import script_main

    raise SystemExit(script_main(__doc__, add_arguments, run))
