"""`make demo`: stand-in (or real) model -> ONNX export -> model repository -> real Triton -> ranking, and one curl to the HTTP API."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import urllib.request
from pathlib import Path

from mxbai_triton.core.memory import SIZES

STANDIN_WARNING = (
    "NOTE: this is the offline stand-in: a random-weight Qwen2 with the real Qwen2.5 tokenizer.\n"
    "      Its scores and ranking are meaningless; pass MODEL=mixedbread-ai/mxbai-rerank-base-v2\n"
    "      on a machine that reaches the Hugging Face hub for the real model."
)


def prepare(model: str | None, workdir: Path, size: str) -> tuple[Path, bool]:
    """Export dir for `model` (a hub id or local dir), or for a fresh stand-in when None."""
    from mxbai_triton.export.onnx_export import ensure_export
    from mxbai_triton.export.standin import ensure_standin

    standin = model is None
    if standin:
        model = str(ensure_standin(workdir / f"standin-{size}", size=size).resolve())
    return ensure_export(model, workdir / "export"), standin


def curl_example(gateway_url: str, query: str, documents: list[str]) -> None:
    """Print a Cohere-style curl to the gateway, send that same request, print the answer."""
    body = json.dumps({"model": "reranker", "query": query, "documents": documents, "top_n": 2}, ensure_ascii=False)
    print(f"\none request to the rerank HTTP API (Cohere v2 shape; /v1/rerank and /rerank take the Jina/vLLM and TEI shapes):\n"
          f"  curl -s {gateway_url}/v2/rerank -H 'Content-Type: application/json' -d {shlex.quote(body)}")
    request = urllib.request.Request(f"{gateway_url}/v2/rerank", data=body.encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        print("  -> " + json.dumps(json.loads(response.read())["results"]))


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("demo", help="stand-in (or real) model -> export -> repository -> Triton -> ranking, and one curl",
                            description=__doc__)
    add_arguments(p)
    p.set_defaults(handler=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="hub id or checkpoint dir (default: offline stand-in)")
    parser.add_argument("--size", default="small", choices=tuple(SIZES), help="stand-in size")
    parser.add_argument("--workdir", default="artifacts/demo", help="where the stand-in, export and repository go")
    parser.add_argument("--protocol", default="grpc", choices=["grpc", "http"], help="KServe protocol of the example ranking")


def run(args: argparse.Namespace) -> int:

    from mxbai_triton.client import RerankClient
    from mxbai_triton.client.cli import print_ranking
    from mxbai_triton.client.example import EXAMPLE_DOCUMENTS, EXAMPLE_QUERY
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.gateway.process import GatewayProcess
    from mxbai_triton.model_repository.generate import generate_repository
    from mxbai_triton.model_repository.server import TritonServer

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    export_dir, standin = prepare(args.model, workdir, args.size)
    spec = ModelSpec.load(export_dir)
    repository = generate_repository(workdir / "repository", spec, target="portable", name="reranker", export_dir=export_dir)
    print(f"model repository: {repository} (ensemble 'reranker')", flush=True)

    server = TritonServer.on_free_ports(repository)
    print("starting tritonserver (the binary bundled in nvidia-pytriton) ...", flush=True)
    with server:
        print(f"ready: gRPC {server.grpc_url}, HTTP {server.http_url}", flush=True)
        url = server.grpc_url if args.protocol == "grpc" else server.http_url
        with RerankClient(url, model="reranker", protocol=args.protocol) as client:
            results = client.rank(EXAMPLE_QUERY, list(EXAMPLE_DOCUMENTS))
            estimated_max = client.limits.estimated_max
        print()
        print_ranking(EXAMPLE_QUERY, results, estimated_max)
        with GatewayProcess(server.grpc_url, "reranker") as gateway:
            curl_example(gateway.url, "Who wrote Moby-Dick?",
                         ["Herman Melville wrote Moby-Dick.", "Harper Lee wrote To Kill a Mockingbird."])
    print("\nserver stopped.")
    if standin:
        print("\n" + STANDIN_WARNING)
    print_next_steps(repository)
    return 0


def print_next_steps(repository: Path) -> None:
    """The commands that serve this same repository with the HTTP API, and query it (copy-paste ready)."""
    cli = Path(sys.executable).parent / "mxbai-triton"
    cli_text = os.path.relpath(cli) if cli.is_file() and not os.path.relpath(cli).startswith("..") else "mxbai-triton"
    body = json.dumps({"model": "reranker", "query": "Who wrote Moby-Dick?",
                       "documents": ["Herman Melville wrote Moby-Dick.", "Paris is in France."]})
    print("\nnext: serve this repository with the rerank HTTP API (Ctrl-C stops it), then, from another terminal, query it:")
    print(f"  {cli_text} serve {shlex.quote(os.path.relpath(repository))} --api-port 8080")
    print(f"  curl -s localhost:8080/v2/rerank -H 'Content-Type: application/json' -d {shlex.quote(body)}")
    print(f"  {cli_text} rank --model reranker --query 'Who wrote Moby-Dick?' 'Herman Melville wrote Moby-Dick.' 'Paris is in France.'")
