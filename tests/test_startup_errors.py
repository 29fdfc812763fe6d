"""Missing or corrupt model files at startup: `serve` exits non-zero and names the file and the problem."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import serve_command

# needs the tiny export and runs the serve command
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def good_repository(tiny_repository):
    return tiny_repository


def _remove(path):
    path.unlink()


def _garble(path):
    path.write_bytes(b"\x00\xffnot what this file should be" * 40)


def _empty(path):
    path.write_bytes(b"")


# (file under the repository, what is done to it, what the error says)
BROKEN = {
    "missing_onnx_model": ("rr_scorer/1/model.onnx", _remove, r"rr_scorer/1/model\.onnx: missing"),
    "empty_onnx_model": ("rr_scorer/1/model.onnx", _empty, r"rr_scorer/1/model\.onnx: empty"),
    "missing_tokenizer": ("rr_tokenizer/1/tokenizer.json", _remove, r"rr_tokenizer/1/tokenizer\.json: missing"),
    "corrupt_tokenizer": ("rr_tokenizer/1/tokenizer.json", _garble,
                          r"rr_tokenizer/1/tokenizer\.json: not a loadable tokenizer"),
    "corrupt_spec": ("rr_scorer/1/spec.json", _garble, r"rr_scorer/1/spec\.json: not a valid model spec"),
    "corrupt_config": ("rr_scorer/config.pbtxt", _garble, r"rr_scorer/config\.pbtxt: not a valid Triton model config"),
    "missing_scorer_model": ("rr_scorer", shutil.rmtree,
                             r"rr_tokenizer: the scorer model 'rr_scorer' it dispatches to is not in the repository"),
    "missing_tokenizer_model": ("rr_tokenizer", shutil.rmtree, r"rr: its step model 'rr_tokenizer' is not in the repository"),
    "missing_python_model_file": ("rr_tokenizer/1/model.py", _remove, r"rr_tokenizer/1/model\.py: missing"),
}


def _serve(repository) -> subprocess.CompletedProcess:
    command, _ = serve_command(repository, "--timeout", "120")
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


@pytest.mark.process
@pytest.mark.parametrize("case", list(BROKEN))
def test_serve_names_the_broken_file_and_exits_non_zero(good_repository, tmp_path, case):
    relative, damage, message = BROKEN[case]
    repository = tmp_path / "repo"
    shutil.copytree(good_repository, repository)
    damage(repository / relative)
    run = _serve(repository)
    assert run.returncode != 0
    assert "cannot be served" in run.stderr
    assert re.search(message, run.stderr), run.stderr


@pytest.mark.triton
def test_serve_reports_the_model_tritonserver_failed_to_load_and_exits_non_zero(good_repository, tmp_path):
    """A corrupt ONNX file passes the file checks; tritonserver's own load error is what the user reads."""
    repository = tmp_path / "repo"
    shutil.copytree(good_repository, repository)
    _garble(repository / "rr_scorer/1/model.onnx")
    run = _serve(repository)
    assert run.returncode != 0
    assert "tritonserver exited with code 1" in run.stderr
    assert "model 'rr_scorer' failed to load" in run.stderr and "Protobuf parsing failed" in run.stderr


def test_repository_check_finds_nothing_wrong_in_a_generated_repository(good_repository):
    from mxbai_triton.model_repository.preflight import check_repository

    assert check_repository(good_repository) == []


ABORT = ["sh", "-c", "echo \"terminate called after throwing an instance of 'boost::interprocess::lock_exception'\"; "
         "exit 134"]


def _launches(monkeypatch, first, then):
    """TritonServer's command is `first` at the first launch and `then(server)` after; returns the launch count."""
    from mxbai_triton.model_repository.server import TritonServer

    launches = []
    real = TritonServer.command

    def command(self):
        launches.append(self)
        return first if len(launches) == 1 else then(self, real)

    monkeypatch.setattr(TritonServer, "command", command)
    return launches


@pytest.mark.triton
def test_a_known_python_backend_abort_while_loading_is_started_once_more_with_a_warning(
        good_repository, monkeypatch, caplog):
    from mxbai_triton.model_repository.server import TritonServer

    launches = _launches(monkeypatch, ABORT, lambda server, real: real(server))
    with caplog.at_level("WARNING"), TritonServer.on_free_ports(good_repository, stop_grace=0) as server:
        assert server.is_ready() and len(launches) == 2
        assert server.log_path.with_suffix(".aborted.log").is_file()  # the first try's log is kept
    assert "known Triton 24.10 python-backend crash" in caplog.text


def test_a_second_abort_or_any_other_failure_is_not_started_again(good_repository, monkeypatch):
    from mxbai_triton.model_repository.server import ServerError, TritonServer

    launches = _launches(monkeypatch, ABORT, lambda server, real: ABORT)
    with pytest.raises(ServerError, match="exited with code 134"):
        TritonServer.on_free_ports(good_repository, stop_grace=0).start()
    assert len(launches) == 2
    other = ["sh", "-c", "echo 'error: something else'; exit 1"]
    launches = _launches(monkeypatch, other, lambda server, real: other)
    with pytest.raises(ServerError, match="something else"):
        TritonServer.on_free_ports(good_repository, stop_grace=0).start()
    assert len(launches) == 1
