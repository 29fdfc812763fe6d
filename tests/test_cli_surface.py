"""The one CLI: every entry point is a subcommand, old names keep working, exit codes and one-line errors."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from mxbai_triton.cli import build_parser, main
from mxbai_triton.perf.cli import BENCHMARKS
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]


def _subcommands(parser) -> dict:
    (action,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return action.choices


def _has_main_block(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    return any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body)


def test_help_lists_every_command():
    assert set(_subcommands(build_parser())) == {
        "standin", "tiny-model", "tokenize", "export", "build-engine", "validate", "repo", "publish", "serve", "rank",
        "eval", "api", "perf", "demo",
    }


def test_every_runnable_perf_module_is_a_perf_subcommand():
    runnable = {p.stem for p in (ROOT / "perf").glob("*.py") if _has_main_block(p)}
    assert runnable == {module for module, _ in BENCHMARKS.values()}
    perf = _subcommands(build_parser())["perf"]
    assert set(_subcommands(perf)) == {"sweep", *BENCHMARKS}


def test_the_old_name_of_standin_keeps_working():
    parser = build_parser()
    assert parser.parse_args(["tiny-model", "out"]).handler is parser.parse_args(["standin", "out"]).handler


def test_server_flags_read_the_environment(monkeypatch):
    monkeypatch.setenv("MXBAI_TRITON_REPOSITORY", "s3://bucket/repo")
    monkeypatch.setenv("MXBAI_TRITON_HTTP_PORT", "9000")
    monkeypatch.setenv("MXBAI_TRITON_API_PORT", "9080")
    monkeypatch.setenv("MXBAI_API_TIMEOUT", "5")
    monkeypatch.setenv("MXBAI_API_MODEL", "reranker")
    serve = build_parser().parse_args(["serve"])
    assert (serve.repository, serve.http_port, serve.grpc_port, serve.api_port, serve.api_timeout) == (
        "s3://bucket/repo", 9000, 8001, 9080, 5.0)
    assert build_parser().parse_args(["api"]).model == "reranker"
    assert build_parser().parse_args(["serve", "local/repo", "--http-port", "7000"]).http_port == 7000


def test_usage_errors_exit_2_with_one_line(capsys, tmp_path):
    assert main(["repo"]) == 2
    assert capsys.readouterr().err == "mxbai-triton repo: error: repo needs SOURCE and --out (or --examples)\n"
    assert main(["tokenize", str(tmp_path / "missing"), "--query", "q", "d"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mxbai-triton tokenize: error: ") and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.process
def test_an_unreachable_hub_is_one_line_naming_the_model_and_what_to_do(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}  # offline, empty cache
    run = run_cli("export", "mixedbread-ai/mxbai-rerank-base-v2", "--out", str(tmp_path / "out"), env=env)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("mxbai-triton export: error: cannot load 'mixedbread-ai/mxbai-rerank-base-v2'")
    assert "local checkpoint directory" in last and "HF_ENDPOINT" in last


def test_repo_examples_regenerates_the_committed_examples(tmp_path, capsys):
    assert main(["repo", "--examples", "--out", str(tmp_path)]) == 0
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("config.pbtxt"))
    committed = sorted(p.relative_to(ROOT / "model_repository" / "examples")
                       for p in (ROOT / "model_repository" / "examples").rglob("config.pbtxt"))
    assert written == committed


@pytest.mark.process
def test_version_prints_the_installed_version():
    from importlib.metadata import version

    run = run_cli("--version")
    assert (run.returncode, run.stdout) == (0, f"mxbai-triton {version('mxbai-triton')}\n")


@pytest.mark.slow
def test_quiet_export_prints_its_result_and_nothing_else(tiny_checkpoint, tmp_path):
    run = run_cli("-q", "export", str(tiny_checkpoint), "--out", str(tmp_path / "export"))
    assert run.returncode == 0, run.stderr
    assert (run.stdout, run.stderr) == (f"exported {tmp_path / 'export' / 'model.onnx'}\n", "")


@pytest.mark.slow
def test_export_shows_our_progress_and_no_exporter_warnings(tiny_checkpoint, tmp_path):
    run = run_cli("export", str(tiny_checkpoint), "--out", str(tmp_path / "export"))
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert lines and all(line.startswith("[") and "] " in line for line in lines), lines  # "[k/5] step ..." only


def _actions(parser, path=()):
    """(command path, action) of every argument of every command, subcommands included."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, (*path, name))
        elif action.dest not in ("help", "version"):
            yield " ".join(path), action


def test_every_flag_and_argument_of_every_command_says_what_it_is():
    missing = sorted({(path, action.option_strings[0] if action.option_strings else action.dest)
                      for path, action in _actions(build_parser()) if not action.help})
    assert missing == []


def test_help_shows_each_flags_default():
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    assert "Triton's gRPC port (default: 8001)" in " ".join(out.getvalue().split())


@pytest.mark.process
def test_api_on_a_busy_port_exits_1_naming_it():
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        run = run_cli("api", "--triton", "127.0.0.1:1", "--port", str(port), timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip().endswith(f"API port {port} already in use by another process (choose another: --port)")


@pytest.mark.process
@pytest.mark.parametrize("model, waiting", [((), "waiting up to 2 s for a server to start (--retry-for 0 fails at once)"),
                                            (("--model", "reranker"), "trying again")])
def test_rank_with_no_server_says_once_what_it_waits_for_then_fails_in_one_line_naming_what_to_start(model, waiting):
    from mxbai_triton.processes import free_port

    run = run_cli("rank", "--url", f"127.0.0.1:{free_port()}", *model, "--retry-for", "2", "--query", "q", "a",
                  timeout=120)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1
    assert sum(waiting in line for line in lines) == 1, lines
    assert lines[-1].startswith("mxbai-triton rank: error: ") and "Connection refused" in lines[-1], lines
    assert lines[-1].endswith("start one with `mxbai-triton serve REPOSITORY` (or `make demo` for a stand-in), "
                              "or point --url at a running one"), lines
