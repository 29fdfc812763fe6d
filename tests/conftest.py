"""Session fixtures: a tiny random-weight stand-in, its ONNX export and the mxbai-rerank oracle, built once."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock


def pytest_collection_modifyitems(items):
    """Files with a slow test first (stable otherwise): pytest-xdist hands out whole files in this order, so the
    longest start at once instead of running alone at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


def built_once(tmp_path_factory, name: str, build: Callable[[Path], Path]) -> Path:
    """`build(empty folder)`'s result, built once per run: under pytest-xdist the first worker builds it into the
    run's shared temporary folder while the others wait on a lock, then all read the same files (read-only)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent / "shared"
    shared.mkdir(exist_ok=True)
    record = shared / f"{name}.path"
    with FileLock(str(shared / f"{name}.lock")):
        if not record.is_file():
            record.write_text(str(build(Path(tempfile.mkdtemp(prefix=f"{name}-", dir=shared)))))
    return Path(record.read_text())


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    from mxbai_triton.export.standin import build_standin

    return built_once(tmp_path_factory, "checkpoint", lambda folder: build_standin(folder / "tiny", size="tiny", seed=0))


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tiny_checkpoint, tmp_path_factory):
    """tokenizer.json and the spec an export of the tiny stand-in would have, without running the exporter."""
    from mxbai_triton.core.model import resolve_spec
    from mxbai_triton.core.preprocess import TOKENIZER_FILENAME
    from mxbai_triton.export.scorer import PADDING_SIDE

    out = tmp_path_factory.mktemp("tokenizer")
    (out / TOKENIZER_FILENAME).symlink_to(tiny_checkpoint / TOKENIZER_FILENAME)
    resolve_spec(str(tiny_checkpoint)).with_overrides(padding_side=PADDING_SIDE).save(out)
    return out


@pytest.fixture(scope="session")
def tiny_export(tiny_checkpoint, tmp_path_factory):
    from mxbai_triton.export.onnx_export import export_onnx

    def export(folder: Path) -> Path:
        export_onnx(str(tiny_checkpoint), folder / "tiny")
        return folder / "tiny"

    return built_once(tmp_path_factory, "export", export)


@pytest.fixture(scope="session")
def oracle(tiny_checkpoint):
    torch = pytest.importorskip("torch")
    mxbai_rerank = pytest.importorskip("mxbai_rerank", reason="the reference package is the test oracle")
    return mxbai_rerank.MxbaiRerankV2(str(tiny_checkpoint), device="cpu", torch_dtype=torch.float32)


@pytest.fixture(scope="session")
def preprocessor(tiny_tokenizer_dir):
    from mxbai_triton.core.preprocess import RerankPreprocessor

    return RerankPreprocessor.from_dir(tiny_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_repository(tiny_export, tmp_path_factory):
    """The tiny export as a portable repository with ensemble 'rr', generated once; tests only read it."""
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.model_repository.generate import generate_repository

    return built_once(tmp_path_factory, "tiny-repository", lambda folder: generate_repository(
        folder, ModelSpec.load(tiny_export), target="portable", name="rr", export_dir=tiny_export))


def settled_stats(read, at_least: int, limit: float = 10.0):
    """`read()` (a tuple whose first item is a count from Triton's statistics) once that count reaches
    `at_least`, or after `limit` seconds: Triton records a python model's statistics after its
    response is sent, so the last answers can arrive before their counts."""
    deadline = time.monotonic() + limit
    while (value := read())[0] < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def run_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`mxbai-triton ARGS` in a child process, as a user runs it; output captured as text."""
    return subprocess.run([sys.executable, "-m", "mxbai_triton", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def serve_command(repository, *extra: str) -> tuple[list[str], dict[str, int]]:
    """`mxbai-triton serve REPOSITORY` on free loopback ports, and those ports."""
    from mxbai_triton.processes import free_port

    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    command = [sys.executable, "-m", "mxbai_triton", "serve", str(repository), "--http-port", str(ports["http"]),
               "--grpc-port", str(ports["grpc"]), "--metrics-port", str(ports["metrics"]), *extra]
    return command, ports


# Small enough that the client's list splitting, the dispatch's row limit and the batcher's merging
# are exercised with a handful of documents.
SERVED_MAX_BATCH = 16
SERVED_MAX_DOCUMENTS = 24


@pytest.fixture(scope="session")
def served(tiny_export, tmp_path_factory):
    """A real tritonserver serving the tiny export as ensemble 'reranker' (portable target)."""
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.core.serving import ServingLimits
    from mxbai_triton.model_repository.generate import generate_repository
    from mxbai_triton.model_repository.server import TritonServer

    spec = ModelSpec.load(tiny_export)
    limits = ServingLimits.for_model(spec, max_batch_size=SERVED_MAX_BATCH, max_documents_per_request=SERVED_MAX_DOCUMENTS,
                                     queue_delay_us=20000)
    repository = generate_repository(
        tmp_path_factory.mktemp("repository"), spec, target="portable", name="reranker", export_dir=tiny_export,
        padding="buckets", limits=limits,  # the GPU targets' padding, so that the batcher's merging is what is tested
    )
    server = TritonServer.on_free_ports(repository, stop_grace=0)
    with server:
        yield server
