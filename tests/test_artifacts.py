"""Artifacts are whole or absent: an export is renamed into place at its end, and `repo` names what an export lacks."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.conftest import run_cli


@pytest.mark.slow
def test_an_export_killed_part_way_leaves_nothing_that_repo_accepts(tiny_checkpoint, tmp_path):
    out = tmp_path / "export"
    export = subprocess.Popen([sys.executable, "-m", "mxbai_triton", "export", str(tiny_checkpoint), "--out", str(out)],
                              stderr=subprocess.PIPE, text=True)
    for line in export.stderr:
        if line.startswith("[3/5]"):  # the graph is being written
            break
    export.send_signal(signal.SIGKILL)
    export.wait()
    assert not out.exists() and list(tmp_path.glob(".export.partial-*"))
    run = run_cli("repo", str(out), "--out", str(tmp_path / "repo"))
    assert run.returncode == 2
    assert f"not an export directory (no spec.json); an interrupted export left {tmp_path}/.export.partial-" in run.stderr


@pytest.mark.process
def test_repo_names_what_a_hand_copied_export_lacks(tiny_tokenizer_dir, tmp_path):
    (tmp_path / "export").mkdir()
    for name in ("spec.json", "tokenizer.json"):
        (tmp_path / "export" / name).write_bytes((tiny_tokenizer_dir / name).read_bytes())
    run = run_cli("repo", str(tmp_path / "export"), "--out", str(tmp_path / "repo"))
    assert run.returncode == 2 and f"{tmp_path / 'export' / 'model.onnx'}: missing" in run.stderr
    assert not (tmp_path / "repo").exists()
