"""The GPU check kit cannot rot: its CPU dry run (tiny shape) runs the whole kit through `make gpu-check`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_gpu_check_dry_run_through_make_reports_agreement_and_throughput():
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(
        ["make", "-s", "gpu-check", f"GPU_PYTHON={sys.executable}", "GPU_CHECK_ARGS=--dry-run"],
        cwd=root, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "fp16 vs fp32: max|diff|" in run.stdout and "bf16 vs fp32: max|diff|" in run.stdout
    assert "second row 1 token" in run.stdout and "tokens/s" in run.stdout
    assert run.stdout.rstrip().endswith("gpu-check: every dtype within tolerance")
