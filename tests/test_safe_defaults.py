"""Safe defaults: safetensors only, no remote code, loopback binding, model control none, admin APIs behind a token."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.conftest import serve_command

TOKEN = "test-admin-token-0123456789"


def _pickle_only_copy(checkpoint, target):
    import torch
    from safetensors.torch import load_file

    shutil.copytree(checkpoint, target)
    torch.save(load_file(target / "model.safetensors"), target / "pytorch_model.bin")
    (target / "model.safetensors").unlink()
    return target


def test_export_refuses_a_checkpoint_with_pickle_weights_only(tiny_checkpoint, tmp_path):
    from mxbai_triton.export.onnx_export import export_onnx

    source = _pickle_only_copy(tiny_checkpoint, tmp_path / "pickled")
    with pytest.raises(ValueError, match=r"no \*\.safetensors weights \(only pytorch_model\.bin\); export loads safetensors only"):
        export_onnx(str(source), tmp_path / "out")
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_export_never_runs_code_shipped_with_a_checkpoint(tiny_checkpoint, tmp_path):
    from mxbai_triton.export.checkpoint import load_causal_lm

    source = tmp_path / "with-code"
    shutil.copytree(tiny_checkpoint, source)
    sentinel = tmp_path / "code-ran"
    (source / "evil.py").write_text(f"open({str(sentinel)!r}, 'w').write('ran')\n")
    config = json.loads((source / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (source / "config.json").write_text(json.dumps(config))
    try:
        model = load_causal_lm(str(source))
        assert type(model).__name__ == "Qwen2ForCausalLM"  # transformers' own class, not the shipped one
    except ValueError as error:  # refusing is as safe as ignoring
        assert "trust_remote_code" in str(error)
    assert not sentinel.exists()


@pytest.fixture(scope="module")
def token_served(tiny_repository):
    """`mxbai-triton serve` with the admin token in the environment, as an operator runs it."""
    command, ports = serve_command(tiny_repository)
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "MXBAI_TRITON_ADMIN_TOKEN": TOKEN},
    )
    try:
        next(line for line in process.stdout if "models ready" in line)
        yield ports
    finally:
        process.terminate()
        process.wait(timeout=60)


def _http(port: int, path: str, *, token: str | None = None, method: str = "GET") -> tuple[int, str]:
    headers = {"admin-token": token} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers,
                                     data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.triton
@pytest.mark.parametrize("path, method", [("/v2/systemsharedmemory/status", "GET"), ("/v2/repository/index", "POST"),
                                          ("/v2/logging", "GET"), ("/v2/trace/setting", "GET")])
def test_admin_http_apis_answer_only_with_the_token(token_served, path, method):
    status, body = _http(token_served["http"], path, method=method)
    assert (status, "This API is restricted, expecting header 'admin-token'" in body) == (403, True)
    assert _http(token_served["http"], path, method=method, token=TOKEN)[0] == 200
    assert _http(token_served["http"], path, method=method, token="wrong-token-0123456789")[0] == 403


@pytest.mark.triton
def test_admin_grpc_protocols_answer_only_with_the_token(token_served):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from mxbai_triton.model_repository.server import GRPC_ADMIN_HEADER

    with grpcclient.InferenceServerClient(f"127.0.0.1:{token_served['grpc']}") as client:
        with pytest.raises(InferenceServerException, match="This protocol is restricted"):
            client.get_system_shared_memory_status()
        with pytest.raises(InferenceServerException, match="This protocol is restricted"):
            client.get_model_repository_index()
        assert client.get_system_shared_memory_status(headers={GRPC_ADMIN_HEADER: TOKEN}).regions == {}
        assert len(client.get_model_repository_index(headers={GRPC_ADMIN_HEADER: TOKEN}).models) == 3


@pytest.mark.triton
def test_inference_needs_no_token_and_models_cannot_be_unloaded_even_with_it(token_served):
    from mxbai_triton.client import RerankClient

    with RerankClient(f"127.0.0.1:{token_served['grpc']}", model="rr") as client:
        assert len(client.rank("q", ["a", "b"])) == 2
    status, body = _http(token_served["http"], "/v2/repository/models/rr/unload", method="POST", token=TOKEN)
    assert status == 503 and "explicit model load / unload is not allowed" in body  # model control mode none
    assert _http(token_served["http"], "/v2/models/rr/ready")[0] == 200


def test_admin_token_must_be_long_and_plain():
    from mxbai_triton.model_repository.server import TritonServer

    with pytest.raises(ValueError, match="at least 16 characters"):
        TritonServer("repo", admin_token="short").restriction_args()
    with pytest.raises(ValueError, match="at least 16 characters"):
        TritonServer("repo", admin_token="has:colon,and=equals-0123").restriction_args()


def _serve_beyond_loopback(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MXBAI_TRITON_ADMIN_TOKEN"} if env is None else env
    return subprocess.run([sys.executable, "-m", "mxbai_triton", "serve", *args, "--host", "0.0.0.0"],
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.process
def test_serve_refuses_to_bind_beyond_loopback_without_a_token_and_says_why(tmp_path):
    run = _serve_beyond_loopback(str(tmp_path / "nothing"))
    assert run.returncode == 2
    assert run.stderr.startswith("mxbai-triton serve: error: refusing to serve on 0.0.0.0 without an admin token: anyone "
                                 "who reaches the ports could use Triton's admin APIs (model-repository, shared-memory, "
                                 "logging, trace)")
    assert "set MXBAI_TRITON_ADMIN_TOKEN or --admin-token-file, bind 127.0.0.1, or pass --insecure" in run.stderr


@pytest.mark.process
def test_serve_insecure_binds_beyond_loopback_without_a_token_with_a_warning(tmp_path):
    run = _serve_beyond_loopback(str(tmp_path / "nothing"), "--insecure")
    assert "warning: serving on 0.0.0.0 without an admin token (--insecure)" in run.stderr
    assert run.returncode == 1 and "model repository not found" in run.stderr  # went on, then stopped at the repository


@pytest.mark.triton
def test_serve_beyond_loopback_with_a_token_starts_and_restricts_the_admin_apis(tiny_repository):
    command, ports = serve_command(tiny_repository, "--host", "0.0.0.0")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "MXBAI_TRITON_ADMIN_TOKEN": TOKEN})
    try:
        ready = next(line for line in process.stdout if "models ready" in line)
        restricted = _http(ports["http"], "/v2/repository/index", method="POST")[0]
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert ready.startswith(f"models ready: HTTP 0.0.0.0:{ports['http']}, gRPC 0.0.0.0:{ports['grpc']}")
    assert restricted == 403
