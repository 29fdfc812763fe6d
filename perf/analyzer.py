"""perf_analyzer sweeps against the ensemble: input data, the run, CSV, a latency/throughput plot, a summary."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .workload import QUERY, documents_for


@dataclass(frozen=True)
class SweepPoint:
    concurrency: int
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    def docs_per_s(self, docs: int) -> float:
        return self.requests_per_s * docs


def write_input_data(path: Path, *, docs: int, doc_tokens: int, lengths: str = "uniform", seed: int = 0) -> Path:
    """perf_analyzer --input-data JSON: one request of a query and `docs` documents (BYTES).

    `lengths` "uniform" gives every document `doc_tokens` tokens; a LENGTH_SIGMAS label draws mixed
    lengths around that median, as retrieved chunks are.
    """
    documents = documents_for(docs, lengths, doc_tokens, seed)
    payload = {"data": [{
        "query": {"content": [QUERY], "shape": [1]},
        "documents": {"content": documents, "shape": [len(documents)]},
    }]}
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


def perf_analyzer_binary() -> str:
    """The perf_analyzer of tritonclient 2.50's wheel, next to this interpreter."""
    candidate = Path(sys.executable).parent / "perf_analyzer"
    found = str(candidate) if candidate.is_file() else shutil.which("perf_analyzer")
    if not found:
        raise FileNotFoundError("perf_analyzer not found: `make setup` installs tritonclient[all]==2.50.0, which ships it")
    return found


def perf_analyzer_env() -> dict[str, str]:
    """perf_analyzer links libcudart even for CPU servers: add the nvidia-cuda-runtime-cu12 lib dir."""
    env = dict(os.environ)
    try:
        import nvidia.cuda_runtime

        lib = Path(next(iter(nvidia.cuda_runtime.__path__))) / "lib"
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(lib), env.get("LD_LIBRARY_PATH", "")) if p)
    except ImportError:
        pass
    return env


def run_sweep(
    url: str, model: str, out_dir: Path, *, docs: int, doc_tokens: int, concurrency: str,
    lengths: str = "uniform", protocol: str = "grpc", window_requests: int = 8, measurement_ms: int | None = None,
    stability: int = 30, max_trials: int = 10,
) -> Path:
    """Run perf_analyzer over `concurrency` ("start:end:step") and return its CSV path.

    Windows hold `window_requests` requests each (count_windows): a time window of a few seconds holds
    one or two 100-document requests on a CPU, and such windows never agree within `stability` %.
    `measurement_ms` asks for time windows instead.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    data = write_input_data(out_dir / "input_data.json", docs=docs, doc_tokens=doc_tokens, lengths=lengths)
    csv_path = out_dir / "perf_analyzer.csv"
    command = [
        perf_analyzer_binary(), "-m", model, "-u", url, "-i", protocol,
        "--input-data", str(data), "--concurrency-range", concurrency,
        *(["--measurement-mode", "time_windows", "--measurement-interval", str(measurement_ms)] if measurement_ms else
          ["--measurement-mode", "count_windows", "--measurement-request-count", str(window_requests)]),
        "--stability-percentage", str(stability),
        "--max-trials", str(max_trials), "--percentile=95", "-f", str(csv_path),
    ]
    print("$ " + " ".join(command), flush=True)
    # perf_analyzer's own output is the progress display: one block per concurrency level.
    completed = subprocess.run(command, env=perf_analyzer_env())
    if completed.returncode != 0:
        raise RuntimeError(
            f"perf_analyzer exited with {completed.returncode}: if it found no stable measurement (a busy machine), "
            f"raise --stability (now {stability}) or --window-requests (now {window_requests}) or --max-trials "
            f"(now {max_trials}), or lower --concurrency (now {concurrency}) or --docs (now {docs})")
    return csv_path


def read_points(csv_path: Path) -> list[SweepPoint]:
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    return sorted(
        (SweepPoint(int(r["Concurrency"]), float(r["Inferences/Second"]), float(r["p50 latency"]) / 1e3,
                    float(r["p95 latency"]) / 1e3, float(r["p99 latency"]) / 1e3) for r in rows),
        key=lambda p: p.concurrency,
    )


def plot(points: list[SweepPoint], docs: int, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = [p.docs_per_s(docs) for p in points]
    for attr, style in (("p50_ms", "o-"), ("p95_ms", "s--"), ("p99_ms", "^:")):
        ax.plot(x, [getattr(p, attr) for p in points], style, label=attr.split("_")[0])
    for p, xi in zip(points, x):
        ax.annotate(f"c={p.concurrency}", (xi, p.p50_ms), textcoords="offset points", xytext=(4, -12), fontsize=8)
    ax.set_xlabel(f"throughput (documents/s, {docs} per request)")
    ax.set_ylabel("request latency (ms)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def summary(points: list[SweepPoint], *, model: str, docs: int, doc_tokens: int, lengths: str = "uniform") -> str:
    best = max(points, key=lambda p: p.requests_per_s)
    lines = [
        f"# perf_analyzer sweep: {model}",
        "",
        f"Workload: 1 query + {docs} documents of ~{doc_tokens} tokens per request ({lengths} lengths).",
        "",
        "| concurrency | requests/s | documents/s | p50 ms | p95 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {p.concurrency} | {p.requests_per_s:.2f} | {p.docs_per_s(docs):.1f} | {p.p50_ms:.1f} | {p.p95_ms:.1f} | {p.p99_ms:.1f} |"
        for p in points
    ]
    lines += ["", f"Peak: {best.docs_per_s(docs):.1f} documents/s at concurrency {best.concurrency} "
                  f"(p95 {best.p95_ms:.1f} ms)."]
    return "\n".join(lines) + "\n"
