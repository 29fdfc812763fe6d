"""CPU precision benchmark: the reference in fp32 and bf16 (torch autocast), the served path on ONNX Runtime fp32 and
OpenVINO fp32 and bf16: docs/s on one request of mixed-length documents, each as a fraction of the matmul peak of
its precision measured in the same run, and the scorer's memory.

Each configuration is one invocation's worth of work (a CPU-lock hold); results are appended to --out
as JSON lines and every invocation prints the table of all of them, with bf16's agreement against
the served fp32 scores of the same documents where both are there. bf16 on a CPU without native
bf16 is refused, as the repository refuses it, and recorded as such.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mxbai_triton.core.memory import SIZES
from mxbai_triton.core.runtime import CpuScoring, cpu_flags, missing_bf16

from .compare import prepare
from .script import add_standin_arguments
from .workload import LENGTH_SIGMAS, QUERY, mixed_documents

CONFIGS = {
    "reference-fp32": None,
    "reference-bf16": None,
    "served-ort-fp32": CpuScoring("onnxruntime", "fp32"),
    "served-ov-fp32": CpuScoring("openvino", "fp32"),
    "served-ov-bf16": CpuScoring("openvino", "bf16"),
}
SHOWN_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def _reference(checkpoint: Path, documents: list[str], precision: str, batch_size: int) -> tuple[float, np.ndarray]:
    """Seconds of MxbaiRerankV2.rank over `documents` (after a warm-up), fp32 or under torch's CPU bf16 autocast."""
    import contextlib

    import torch
    from mxbai_rerank import MxbaiRerankV2

    model = MxbaiRerankV2(str(checkpoint), device="cpu", torch_dtype=torch.float32)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    with autocast:
        model.predict(["warm-up"], ["warm-up"])
        start = time.perf_counter()
        results = model.rank(QUERY, documents, top_k=len(documents), batch_size=batch_size, return_documents=False)
        seconds = time.perf_counter() - start
    scores = np.zeros(len(documents), np.float32)
    for result in results:
        scores[result.index] = result.score
    return seconds, scores


def _scorer_memory(repository: Path) -> dict[str, float]:
    """GiB of the scorer's python stub: resident, of which anonymous (its own) and file-backed (mapped weights)."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            if "triton_python_backend_stub" in cmdline and str(repository / "reranker_scorer") in cmdline:
                status = dict(line.split(":", 1) for line in (proc / "status").read_text().splitlines() if ":" in line)
                return {k: round(int(status[k].split()[0]) / 2**20, 2) for k in ("VmRSS", "RssAnon", "RssFile", "VmHWM")}
        except OSError:
            continue
    return {}


def _served(export: Path, documents: list[str], scoring: CpuScoring, workdir: Path) -> dict:
    """One request of `documents` through the bundled tritonserver (after a 3-document warm-up), timed at the client."""
    from mxbai_triton.client import RerankClient
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.core.serving import ServingLimits
    from mxbai_triton.model_repository.generate import cpu_scoring, generate_repository
    from mxbai_triton.model_repository.metrics_port import read_counters, scorer_precisions
    from mxbai_triton.model_repository.server import TritonServer

    cpu_scoring("portable", scoring.precision, scoring.runtime)  # bf16 without native bf16: refused as `repo` refuses it
    spec = ModelSpec.load(export)
    # A real-shape 100-document request takes minutes on a few cores: its last sub-batches wait in the
    # scorer's queue longer than the default 60 s queue timeout, which would reject them.
    limits = ServingLimits.for_model(spec, queue_timeout_us=3_600_000_000)
    repository = generate_repository(workdir / f"cpu-precision-{scoring.runtime}-{scoring.precision}", spec, target="portable",
                                     name="reranker", export_dir=export, scoring=scoring, limits=limits)
    with TritonServer.on_free_ports(repository, stop_grace=0) as server, \
            RerankClient(server.grpc_url, model="reranker", timeout=3600) as client:
        client.scores(QUERY, documents[:3])
        before = read_counters(server.metrics_url)
        start = time.perf_counter()
        scores = client.scores(QUERY, documents)
        seconds = time.perf_counter() - start
        after = read_counters(server.metrics_url)
        computed = {k: after[f"mxbai_dispatch_{k}"] - before[f"mxbai_dispatch_{k}"] for k in ("real_tokens", "padded_tokens")}
        return {"seconds": seconds, "scores": scores, "loaded": scorer_precisions(server.metrics_url)["reranker_scorer"],
                "padded_per_real": computed["padded_tokens"] / computed["real_tokens"], "memory_gib": _scorer_memory(repository)}


def _peak_gflops(measure, shape: tuple[int, int, int], precision: str, trials: int = 5, seconds: float = 1.0) -> float:
    """The best rate of `precision` on the model's MLP GEMM over `trials` timings of about `seconds` each (bf16:
    tens of GFLOP/s where emulated, TFLOP/s with AMX): the best, as a shared machine only ever slows a timing down."""
    flop = 2 * shape[0] * shape[1] * shape[2]
    first = measure("cpu", 0, 1, dtype=precision, shape=shape)
    repeats = max(1, round(seconds / (flop / (first * 1e12))))
    return max(measure("cpu", 0, repeats, dtype=precision, shape=shape) for _ in range(trials)) * 1e3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_standin_arguments(parser, size="base")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--docs", type=int, default=100, help="documents of the request")
    parser.add_argument("--median", type=int, default=250, help="median document length in tokens")
    parser.add_argument("--lengths", default="lognormal-0.6", choices=list(LENGTH_SIGMAS), help="length distribution")
    parser.add_argument("--reference-batch", type=int, default=8,
                        help="the reference's rank() batch size (its default 32 materialises [32, longest, 151936] fp32 "
                             "logits: ~20 GB at these lengths)")
    parser.add_argument("--peak-rows", type=int, default=2048, help="tokens of the MLP GEMM whose rate is each precision's peak")
    parser.add_argument("--out", default="artifacts/cpu-precision.jsonl", help="results, appended (JSON lines)")


def run(args: argparse.Namespace) -> int:
    from mxbai_triton.core.preprocess import RerankPreprocessor

    from .gpu_check import flops_per_row, matmul_peak_tflops

    names = [c for c in args.configs.split(",") if c]
    if unknown := set(names) - set(CONFIGS):
        raise ValueError(f"unknown configurations {', '.join(sorted(unknown))}; choose from {', '.join(CONFIGS)}")
    workdir = Path(args.workdir)
    checkpoint, export = prepare(args.size, workdir)
    documents = mixed_documents(args.docs, LENGTH_SIGMAS[args.lengths], median=args.median, seed=26)
    tokens = [len(ids) for ids in RerankPreprocessor.from_dir(export).encode(QUERY, documents)]
    gflop = sum(flops_per_row(SIZES[args.size], n) for n in tokens) / 1e9
    hidden, _, _, _, intermediate = SIZES[args.size]
    mlp = (args.peak_rows, hidden, intermediate)  # the up/gate projection of `peak_rows` tokens
    peaks = {p: _peak_gflops(matmul_peak_tflops, mlp, p) for p in ("fp32", "bf16")}
    flags = cpu_flags()
    common = {"size": args.size, "docs": args.docs, "real_tokens": sum(tokens), "gflop": round(gflop, 1),
              "date": time.strftime("%Y-%m-%d %H:%M"), "flags": [f for f in SHOWN_FLAGS if f in flags]}
    print(f"{args.size} stand-in, {args.docs} docs x ~{args.median} tokens ({args.lengths}), {sum(tokens)} real tokens, "
          f"{gflop:.0f} GFLOP; matmul peak ({mlp[0]}x{mlp[1]}x{mlp[2]}) fp32 {peaks['fp32']:.1f}, bf16 {peaks['bf16']:.1f} GFLOP/s; flags "
          f"{' '.join(common['flags'])}; {missing_bf16() or 'native bf16'}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in names:
        precision = name.rsplit("-", 1)[1]
        record = {"config": name, **common, "peak_gflops": round(peaks[precision], 1)}
        try:
            if CONFIGS[name] is None:
                seconds, scores = _reference(checkpoint, documents, precision, args.reference_batch)
                record.update(seconds=seconds, scores=scores)
            else:
                record.update(_served(export, documents, CONFIGS[name], workdir))
        except ValueError as refusal:
            record["refused"] = str(refusal)
        else:
            record["scores"] = [float(s) for s in record["scores"]]
        with out.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
        outcome = record["refused"] if "refused" in record else f"{args.docs / record['seconds']:.3f} docs/s"
        print(f"  {name}: {outcome}", flush=True)
    print("\n" + table([json.loads(line) for line in out.read_text().splitlines() if line.strip()]))
    return 0


def table(records: list[dict]) -> str:
    """Markdown: docs/s, GFLOP/s on real tokens as a fraction of its precision's peak, memory, agreement with fp32."""
    from .agreement import agreement

    fp32 = {(r["size"], r["docs"]): r["scores"] for r in records if r["config"] == "served-ort-fp32" and "scores" in r}
    lines = ["| size | config | docs | s | docs/s | GFLOP/s (real tokens) | peak of its precision | fraction | scorer RSS GiB "
             "(anon + file) | vs served fp32: max abs diff, Spearman, top-10 |", "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in records:
        if "refused" in r:
            lines.append(f"| {r['size']} | {r['config']} | {r['docs']} | — | refused | | {r['peak_gflops']} | | | {r['refused']} |")
            continue
        rate = r["gflop"] / r["seconds"]
        memory = r.get("memory_gib", {})
        rss = f"{memory['VmRSS']} ({memory['RssAnon']} + {memory['RssFile']})" if memory else ""
        versus = ""
        if (key := (r["size"], r["docs"])) in fp32 and r["config"] != "served-ort-fp32":
            a = agreement(np.array(fp32[key]), np.array(r["scores"]))
            versus = f"{a.max_abs:.3g}, {a.spearman:.4f}, {a.top_k_overlap:.2f}"
        lines.append(f"| {r['size']} | {r['config']} | {r['docs']} | {r['seconds']:.1f} | {r['docs'] / r['seconds']:.3f} | "
                     f"{rate:.1f} | {r['peak_gflops']} | {rate / r['peak_gflops']:.0%} | {rss} | {versus} |")
    return "\n".join(lines)


if __name__ == "__main__":
    from .script import script_main

    raise SystemExit(script_main(__doc__, add_arguments, run))
