"""The perf stage: input data for perf_analyzer, and against a served tiny model a short sweep (CSV, plot, summary)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mxbai_triton.perf.analyzer import read_points, write_input_data


def test_input_data_holds_one_query_and_the_requested_documents(tmp_path):
    data = json.loads(write_input_data(tmp_path / "d.json", docs=5, doc_tokens=20).read_text())["data"][0]
    assert data["query"]["shape"] == [1] and data["documents"]["shape"] == [5]
    assert all(len(d.split()) == 20 for d in data["documents"]["content"])


@pytest.mark.triton
def test_perf_command_sweeps_concurrency_and_writes_csv_plot_and_summary(served, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "mxbai_triton", "perf", "sweep", "--url", served.grpc_url, "--model", "reranker",
         "--docs", "4", "--doc-tokens", "16", "--concurrency", "1:2:1", "--measurement-ms", "1000",
         # A smoke test on a shared 2-core machine: accept any stable-enough window.
         "--stability", "1000", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    points = read_points(tmp_path / "perf_analyzer.csv")
    assert [p.concurrency for p in points] == [1, 2]
    assert all(p.requests_per_s > 0 and 0 < p.p50_ms <= p.p99_ms for p in points)
    assert (tmp_path / "latency_vs_throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| concurrency | requests/s | documents/s |" in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
def test_model_analyzer_config_launches_the_bundled_server_with_our_perf_analyzer(tiny_repository, tmp_path):
    import yaml

    from mxbai_triton.model_repository.server import backend_directory
    from mxbai_triton.perf.model_analyzer import write_config

    path = write_config(tiny_repository, tmp_path / "ma", model="rr_scorer", seq=64, batch_sizes=[8], concurrency=[1, 2],
                        queue_delays_us=[0, 2000], instance_counts=[1, 2])
    config = yaml.safe_load(path.read_text())
    assert config["triton_launch_mode"] == "local"
    assert config["triton_server_path"].endswith("tritonserver/bin/tritonserver")
    assert config["triton_server_flags"]["backend_directory"] == str(backend_directory())
    assert config["perf_analyzer_path"] == str(Path(sys.executable).parent / "perf_analyzer")
    search = config["profile_models"]["rr_scorer"]["model_config_parameters"]
    assert search["dynamic_batching"]["max_queue_delay_microseconds"] == [0, 2000]
    assert search["instance_group"] == [{"kind": "KIND_CPU", "count": [1, 2]}]
    data = json.loads(Path(config["perf_analyzer_flags"]["input-data"]).read_text())["data"][0]
    assert data["input_ids"]["shape"] == [64] and max(data["input_ids"]["content"]) < 151643


def test_input_data_with_mixed_lengths_varies_around_the_median(tmp_path):
    data = json.loads(write_input_data(tmp_path / "d.json", docs=50, doc_tokens=40, lengths="lognormal-1.0").read_text())
    lengths = [len(d.split()) for d in data["data"][0]["documents"]["content"]]
    assert min(lengths) < 40 < max(lengths) and max(lengths) / min(lengths) > 5


@pytest.mark.triton
def test_served_benchmark_reports_latency_and_little_padding_for_mixed_requests(tiny_export, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "mxbai_triton.perf.served_bench", "--export", str(tiny_export), "--workdir", str(tmp_path),
         "--queries", "2", "--docs", "30", "--latency-requests", "5", "--sigmas", "lognormal-1.0"],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "3-document request, concurrency 1: p50" in run.stdout
    row = next(line for line in run.stdout.splitlines() if line.startswith("| lognormal-1.0 |"))
    computed_over_real = float(row.split("|")[3])
    assert 1.0 <= computed_over_real <= 1.15


def test_aiperf_gets_the_workload_lengths_as_a_normal_mean_and_deviation():
    from mxbai_triton.perf.workload import length_moments

    assert length_moments("uniform", 60) == (60, 0)
    # lognormal(median 60, sigma 0.6): mean 60·e^0.18 = 71.8, deviation 71.8·sqrt(e^0.36 − 1) = 47.3
    assert length_moments("lognormal-0.6", 60) == (72, 47)


def test_aiperf_command_runs_offline_against_the_gateway_with_the_workload(tmp_path):
    from mxbai_triton.perf.aiperf_bench import aiperf_command

    command = aiperf_command(Path("v/bin/aiperf"), "nim-rankings", url="http://127.0.0.1:8080", model="reranker",
                             tokenizer=tmp_path, passages=10, tokens=(72, 47), concurrency=16, requests=160, out=tmp_path / "o")
    assert command == [
        "v/bin/aiperf", "profile", "--endpoint-type", "nim-rankings", "--url", "http://127.0.0.1:8080", "--model", "reranker",
        "--tokenizer", str(tmp_path.resolve()), "--rankings-passages-mean", "10", "--rankings-passages-stddev", "0",
        "--rankings-passages-prompt-token-mean", "72", "--rankings-passages-prompt-token-stddev", "47",
        "--rankings-query-prompt-token-mean", "7", "--rankings-query-prompt-token-stddev", "0", "--concurrency", "16",
        "--request-count", "160", "--warmup-request-count", "16", "--random-seed", "0", "--artifact-dir", str(tmp_path / "o"),
        "--ui-type", "none", "--no-server-metrics", "--no-gpu-telemetry"]


def test_aiperf_results_are_read_from_its_json_export_and_written_with_a_plot(tmp_path):
    from mxbai_triton.perf.aiperf_bench import Point, read_aiperf, write_results

    export = tmp_path / "profile_export_aiperf.json"  # the fields AIPerf 0.13 writes that we read
    export.write_text(json.dumps({
        "request_latency": {"unit": "ms", "avg": 30.0, "p50": 25.5, "p90": 40.25, "p99": 70.0},
        "request_throughput": {"unit": "requests/sec", "avg": 33.5}, "request_count": {"unit": "requests", "avg": 158.0},
        "error_summary": [{"error_details": {"code": 500}, "count": 2}]}))
    point = read_aiperf("nim-rankings", 16, export)
    assert point == Point("nim-rankings", 16, 158, 2, 25.5, 40.25, 70.0, 33.5)
    csv_path, png, table = write_results([point, Point("grpc client", 16, 160, 0, 20.0, 30.0, 50.0, 40.0)], tmp_path, "t")
    assert "| nim-rankings | 16 | 158 | 2 | 25.5 | 40.2 | 70.0 | 33.50 |" in table
    assert csv_path.read_text().splitlines()[0] == "path,concurrency,requests,errors,p50_ms,p90_ms,p99_ms,requests_per_s"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
