"""Model discovery on a real tritonserver whose models come and go (explicit model control): `api` without --model,
`rank` and `perf` without --model, and an unknown name listing the served ones everywhere."""

from __future__ import annotations

import httpx
import pytest

from mxbai_triton.gateway.process import GatewayProcess
from tests.conftest import run_cli
from tests.reference import reference_scores
from tests.waiting import GUARD, wait_until

pytestmark = pytest.mark.triton

QUERY = "Who wrote 'To Kill a Mockingbird'?"
DOCUMENTS = ["Harper Lee wrote it in 1960.", "Boil water, add salt.", "Goethe schrieb Faust."]


@pytest.fixture(scope="module")
def two_ensembles(tiny_export, tmp_path_factory):
    """A repository holding ensembles 'rr' and 'rr2'; Triton starts with 'rr' only and loads the rest on request."""
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.model_repository.generate import generate_repository
    from mxbai_triton.model_repository.server import TritonServer

    root = tmp_path_factory.mktemp("two-ensembles")
    for name in ("rr", "rr2"):
        generate_repository(root, ModelSpec.load(tiny_export), target="portable", name=name, export_dir=tiny_export)
    # The scorer is called over BLS, not as an ensemble step: explicit mode loads it by name.
    server = TritonServer.on_free_ports(root, stop_grace=0, extra_args=[
        "--model-control-mode=explicit", "--load-model=rr", "--load-model=rr_scorer"])
    with server:
        yield server


@pytest.fixture
def triton(two_ensembles):
    """The server with 'rr' only, whatever the test before left loaded."""
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(two_ensembles.grpc_url)
    for name in ("rr2", "rr2_scorer"):
        if client.is_model_ready(name):
            client.unload_model(name)
    client.close()
    return two_ensembles


def _load_rr2(server) -> None:
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(server.grpc_url)
    client.load_model("rr2_scorer")
    client.load_model("rr2")
    client.close()


def test_api_without_model_serves_the_ensembles_of_the_repository(triton, oracle):
    expected = reference_scores(oracle, QUERY, DOCUMENTS)
    with GatewayProcess(triton.grpc_url, None) as gateway:
        models = httpx.get(f"{gateway.url}/v1/models").json()
        ranked = httpx.post(f"{gateway.url}/rerank", json={"query": QUERY, "texts": DOCUMENTS, "raw_scores": True}).json()
    assert [m["id"] for m in models["data"]] == ["rr"]
    assert [r["index"] for r in ranked] == sorted(range(3), key=lambda i: -expected[i])
    assert max(abs(r["score"] - expected[r["index"]]) for r in ranked) <= 1e-4


def test_an_ensemble_loaded_later_is_served_and_one_unloaded_is_not(triton):
    import tritonclient.grpc as grpc

    body = {"model": "rr2", "query": QUERY, "documents": DOCUMENTS}
    with GatewayProcess(triton.grpc_url, None, "--api-refresh", "0.5") as gateway:
        before = httpx.post(f"{gateway.url}/v2/rerank", json=body)
        _load_rr2(triton)
        after = httpx.post(f"{gateway.url}/v2/rerank", json=body)  # no wait: an unknown name is looked up at once
        listed = httpx.get(f"{gateway.url}/v1/models").json()
        client = grpc.InferenceServerClient(triton.grpc_url)
        client.unload_model("rr2")
        client.close()
        # Gone from the gateway at one of its next looks at the index (every 0.5 s).
        assert wait_until(lambda: httpx.post(f"{gateway.url}/v2/rerank", json=body).status_code == 404, GUARD)
        gone = httpx.post(f"{gateway.url}/v2/rerank", json=body)
        default = httpx.post(f"{gateway.url}/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS}).json()
    assert (before.status_code, before.json()) == (404, {"message": "model 'rr2' is not served here; served: rr"})
    assert after.status_code == 200 and len(after.json()["results"]) == 3
    assert [m["id"] for m in listed["data"]] == ["rr", "rr2"]
    assert (gone.status_code, gone.json()) == (404, {"message": "model 'rr2' is not served here; served: rr"})
    assert default["model"] == "rr"


def test_the_model_flag_filters_what_is_discovered(triton):
    _load_rr2(triton)
    with GatewayProcess(triton.grpc_url, "rr2") as gateway:
        models = httpx.get(f"{gateway.url}/v1/models").json()
        other = httpx.post(f"{gateway.url}/v1/ranking", json={"model": "rr", "query": {"text": "q"}, "passages": [{"text": "a"}]})
    assert [m["id"] for m in models["data"]] == ["rr2"]
    assert (other.status_code, other.json()["message"]) == (404, "model 'rr' is not served here; served: rr2")


def test_rank_without_model_uses_the_one_served_ensemble(triton):
    run = run_cli("rank", "--url", triton.grpc_url, "--query", QUERY, "--json", *DOCUMENTS, timeout=120)
    assert run.returncode == 0, run.stderr
    assert sorted(line.split('"index": ')[1].split(",")[0] for line in run.stdout.splitlines()) == ["0", "1", "2"]


def test_rank_without_model_asks_which_when_several_are_served(triton):
    _load_rr2(triton)
    run = run_cli("rank", "--url", triton.grpc_url, "--query", QUERY, *DOCUMENTS, timeout=120)
    assert (run.returncode, run.stderr) == (2, f"mxbai-triton rank: error: 2 rerank ensembles are served at "
                                               f"{triton.grpc_url}: rr, rr2; choose one with --model\n")


@pytest.mark.parametrize("command", [("rank", "--query", QUERY, "doc"), ("perf", "sweep")], ids=["rank", "perf"])
def test_an_unknown_model_on_the_command_line_lists_the_served_ones(triton, command):
    run = run_cli(*command, "--url", triton.grpc_url, "--model", "reranker", timeout=120)
    assert (run.returncode, run.stderr) == (
        2, f"mxbai-triton {command[0]}: error: model 'reranker' is not served at {triton.grpc_url}; served: rr\n")
