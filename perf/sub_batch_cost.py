"""Fit the sub-batch cost model (seconds per execution, per padded token, per attention cell) to the portable
scorer's own executions of a stand-in, one sub-batch at a time, timed by Triton's statistics."""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from .compare import prepare
from .script import add_standin_arguments

LENGTHS = (64, 128, 256, 512, 1024, 2048, 4096, 8272)


class ScorerTimer:
    """Sends sub-batches straight to a scorer model, one at a time, and reads each one's execution from Triton's
    statistics (compute time of that execution alone: no queue, no BLS hop)."""

    def __init__(self, grpc_url: str, scorer: str, *, input_names=("input_ids", "attention_mask"), dtype="int64"):
        import tritonclient.grpc as grpcclient

        self.client = grpcclient.InferenceServerClient(grpc_url)
        self.scorer, self.input_names, self.dtype = scorer, input_names, np.dtype(dtype)

    def __enter__(self) -> "ScorerTimer":
        return self

    def __exit__(self, *exc) -> None:
        self.client.close()

    def statistics(self) -> tuple[int, float]:
        """(executions, seconds of compute) of the scorer so far."""
        stats = self.client.get_inference_statistics(self.scorer).model_stats[0]
        return stats.execution_count, stats.inference_stats.compute_infer.ns / 1e9

    def seconds(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> float:
        """Execution seconds of one sub-batch."""
        import tritonclient.grpc as grpcclient

        inputs = []
        for name, array in zip(self.input_names, (input_ids, attention_mask)):
            tensor = grpcclient.InferInput(name, list(array.shape), "INT64" if self.dtype == np.int64 else "INT32")
            tensor.set_data_from_numpy(array.astype(self.dtype, copy=False))
            inputs.append(tensor)
        executions, compute = self.statistics()
        self.client.infer(self.scorer, inputs)
        deadline = time.monotonic() + 10  # a python model's statistics are recorded after its response is sent
        while (now := self.statistics())[0] <= executions and time.monotonic() < deadline:
            time.sleep(0.01)
        if now[0] != executions + 1:
            raise RuntimeError(f"{self.scorer} ran {now[0] - executions} executions for one request: is it idle?")
        return now[1] - compute


def shapes(limits) -> list[tuple[int, int]]:
    """(rows, length) pairs the dispatch plans: at each length one row, a third of the most rows, the most rows."""
    out = []
    for length in LENGTHS:
        most = limits.rows_at(length)
        out += [(rows, length) for rows in sorted({1, max(1, most // 3), most})]
    return out


def fit(samples: list[tuple[int, int, float]], linear_flops: float, attention_flops: float) -> tuple[float, float, float]:
    """(seconds per execution, linear FLOP/s, attention FLOP/s) of `samples` (rows, length, seconds), least
    relative squares; a term whose coefficient comes out negative is left out."""
    rows, length, seconds = (np.array(x, dtype=float) for x in zip(*samples))
    columns = np.stack([np.ones_like(rows), rows * length * linear_flops, rows * length * length * attention_flops], axis=1)
    keep = [0, 1, 2]
    while True:
        weighted = columns[:, keep] / seconds[:, None]  # relative errors: short and long executions count alike
        solution, *_ = np.linalg.lstsq(weighted, np.ones_like(seconds), rcond=None)
        if (solution >= 0).all() or len(keep) == 1:
            break
        keep.pop(int(np.argmin(solution)))
    coefficients = dict.fromkeys(range(3), 0.0) | dict(zip(keep, solution))
    return coefficients[0], *(1 / c if c > 0 else float("inf") for c in (coefficients[1], coefficients[2]))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_standin_arguments(parser)
    parser.add_argument("--repeats", type=int, default=3, help="executions per shape (the median counts)")


def run(args: argparse.Namespace) -> int:
    from mxbai_triton.core.cost import TargetRates, architecture_of, attention_flops_per_cell, linear_flops_per_token
    from mxbai_triton.core.dispatch import DispatchLimits
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.core.serving import ServingLimits
    from mxbai_triton.model_repository.generate import generate_repository
    from mxbai_triton.model_repository.server import TritonServer

    workdir = Path(args.workdir)
    export = prepare(args.size, workdir)[1]
    spec, arch = ModelSpec.load(export), architecture_of("", export)
    repository = generate_repository(workdir / "cost-fit", spec, target="portable", name="reranker", export_dir=export)
    limits = DispatchLimits.of(spec, ServingLimits.load(repository / "reranker_tokenizer" / "1"))
    rng = np.random.default_rng(0)
    samples = []
    print(f"sub-batch cost fit: {args.size} stand-in, portable target, {time.strftime('%Y-%m-%d')}; median of "
          f"{args.repeats} executions per shape, Triton's compute time", flush=True)
    with TritonServer.on_free_ports(repository, stop_grace=0) as server, ScorerTimer(server.grpc_url, "reranker_scorer") as timer:
        for rows, length in shapes(limits):
            ids = rng.integers(100, 150_000, size=(rows, length))
            mask = np.ones_like(ids)
            timer.seconds(ids, mask)  # ONNX Runtime's first run of a shape allocates
            seconds = statistics.median(timer.seconds(ids, mask) for _ in range(args.repeats))
            samples.append((rows, length, seconds))
    per_execution, linear, attention = fit(samples, linear_flops_per_token(arch), attention_flops_per_cell(arch))
    rates = TargetRates(linear, attention, per_execution, 0.0, f"fitted: {args.size} stand-in")
    cost = rates.cost(arch)
    print("\n| rows x length | measured ms | estimated ms |\n|---|---:|---:|")
    for rows, length, seconds in samples:
        print(f"| {rows} x {length} | {1e3 * seconds:.1f} | {1e3 * cost.seconds(rows, length):.1f} |")
    errors = [cost.seconds(r, n) / s - 1 for r, n, s in samples]
    print(f"\nfit: {1e3 * per_execution:.2f} ms per execution, projections and MLP {linear / 1e9:.1f} GFLOP/s, "
          f"attention {attention / 1e9:.1f} GFLOP/s (causal FLOPs); estimate vs measured {min(errors):+.0%} .. {max(errors):+.0%}")
    print(f"serving.json sub_batch_cost for this model: {cost}")
    return 0


if __name__ == "__main__":
    from .script import script_main

    raise SystemExit(script_main(__doc__, add_arguments, run))
