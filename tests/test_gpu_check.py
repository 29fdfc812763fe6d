"""The GPU check kit cannot rot: its CPU dry run (tiny shape) runs the whole kit through `make gpu-check`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.process
def test_gpu_check_dry_run_through_make_reports_agreement_with_and_without_nan_pads_throughput_and_profiles():
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(
        ["make", "-s", "gpu-check", f"GPU_PYTHON={sys.executable}", "GPU_CHECK_ARGS=--dry-run"],
        cwd=root, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "fp16 vs fp32: max|diff|" in run.stdout and "bf16 vs fp32: max|diff|" in run.stdout
    # The pad token's embedding set to NaN: the scores must stay finite and within tolerance.
    assert run.stdout.count(", pads NaN vs fp32: max|diff|") == 4 and "FAIL" not in run.stdout
    assert "profile 1-32 at 2 x 32 fp16: ran" in run.stdout and "profile 33-64 at 2 x 64 fp16: ran" in run.stdout
    assert "second row 1 token" in run.stdout and "tokens/s" in run.stdout
    assert run.stdout.rstrip().endswith("gpu-check: every dtype within tolerance")
