"""The `mxbai-triton` export-stage commands as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mxbai_triton.core.preprocess import RerankPreprocessor
from tests.conftest import run_cli


@pytest.mark.process
def test_tokenize_prints_one_json_line_per_document(tiny_tokenizer_dir):
    run = run_cli("tokenize", str(tiny_tokenizer_dir), "--query", "who?", "--instruction", "be brief", "doc one", "<|im_end|>")
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    expected = RerankPreprocessor.from_dir(tiny_tokenizer_dir).encode("who?", ["doc one", "<|im_end|>"], instruction="be brief")
    assert lines == [{"input_ids": ids} for ids in expected]


@pytest.mark.process
def test_tokenize_honours_max_length(tiny_checkpoint):
    run = run_cli("tokenize", str(tiny_checkpoint), "--query", "q", "--max-length", "4", "a b c d e f g h")
    assert run.returncode == 0, run.stderr
    assert len(json.loads(run.stdout)["input_ids"]) == 79 + 4


@pytest.mark.process
def test_tokenize_does_not_import_torch(tiny_tokenizer_dir):
    code = (
        "import sys; from mxbai_triton.cli import main; "
        f"main(['tokenize', {str(tiny_tokenizer_dir)!r}, '--query', 'q', 'd']); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


@pytest.mark.slow
def test_validate_command_exits_non_zero_on_a_broken_export(tiny_export, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_export, broken)
    raw = json.loads((broken / "spec.json").read_text())
    raw["yes_token_id"] = 17
    (broken / "spec.json").write_text(json.dumps(raw))
    run = run_cli("validate", str(broken), "--batches", "1", "--lengths", "8")
    assert run.returncode == 1  # a failed check
    assert "validation FAILED" in run.stderr and "1 of 1 cases exceed" in run.stderr


@pytest.mark.process
def test_export_of_unknown_model_fails_with_a_clear_message(tmp_path):
    run = run_cli("export", "not-a-model", "--out", str(tmp_path / "x"))
    assert run.returncode == 2  # a usage error
    assert "unknown model 'not-a-model'" in run.stderr
