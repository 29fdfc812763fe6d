"""The perf stage against a served tiny model: a short perf_analyzer sweep produces CSV, plot and summary."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mxbai_triton.perf.analyzer import read_points, write_input_data

pytestmark = pytest.mark.triton


def test_input_data_holds_one_query_and_the_requested_documents(tmp_path):
    import json

    data = json.loads(write_input_data(tmp_path / "d.json", docs=5, doc_tokens=20).read_text())["data"][0]
    assert data["query"]["shape"] == [1] and data["documents"]["shape"] == [5]
    assert all(len(d.split()) == 20 for d in data["documents"]["content"])


def test_perf_command_sweeps_concurrency_and_writes_csv_plot_and_summary(served, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "mxbai_triton", "perf", "--url", served.grpc_url, "--model", "reranker",
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
