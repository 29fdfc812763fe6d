"""CLI of the repository stage: repo (generate a model repository) and serve (run tritonserver)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

from mxbai_triton.gateway import cli as gateway_cli
from mxbai_triton.gateway.cli import EnvDefaults

from .server import ADMIN_HEADER, GRPC_ADMIN_HEADER, RESTRICTED_APIS, TOKEN_ENV

SERVE_ENV = "MXBAI_TRITON_"


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("repo", help="generate a Triton model repository from an export (or a known model's configs)")
    p.add_argument("source", nargs="?",
                   help="export directory (model.onnx, tokenizer.json, spec.json), or base-v2/large-v2 for configs only")
    p.add_argument("--out", default=None, help="model repository root")
    p.add_argument("--examples", action="store_true",
                   help="regenerate the committed example repositories (model_repository/examples/, or --out)")
    p.add_argument("--target", default="portable", choices=["portable", "onnx", "trt"])
    p.add_argument("--name", default=None, help="ensemble name (default: from the spec)")
    p.add_argument("--engine", default=None, help="directory with model.plan (trt target)")
    p.add_argument("--instance-kind", default="gpu", choices=["gpu", "cpu"], help="onnx target: where ONNX Runtime runs")
    p.add_argument("--special-tokens-in-text", default=None, choices=["parse", "text"],
                   help="special-token strings inside queries and documents: parse them as special tokens, as the "
                        "reference does (default, same scores), or as plain text (untrusted text cannot imitate the "
                        "prompt template; scores of such texts then differ from the reference)")
    p.add_argument("--padding", default=None, choices=["buckets", "multiple"],
                   help="tokenizer padding: length buckets (lets requests merge) or multiple of 8 (least padding); "
                        "default: buckets for trt/onnx, multiple for portable")
    p.set_defaults(handler=_repo)

    p = commands.add_parser("publish", help="upload a generated model repository to S3 for tritonserver replicas")
    p.add_argument("repository", help="generated model repository (local folder)")
    p.add_argument("url", help="s3://BUCKET/PREFIX")
    p.add_argument("--endpoint", default=None, help="S3-compatible endpoint URL (MinIO, moto, ...); default AWS")
    p.add_argument("--delete-extra", action="store_true", help="delete objects under PREFIX the repository lacks")
    p.set_defaults(handler=_publish)

    p = commands.add_parser(
        "serve", help="run the bundled tritonserver on a model repository, in the foreground",
        description=f"Flags can also come from the environment: {SERVE_ENV}REPOSITORY, _S3_ENDPOINT, _HOST, _HTTP_PORT, "
                    f"_GRPC_PORT, _METRICS_PORT, _TIMEOUT, _API_PORT, _API_MODEL (and the API's {gateway_cli.ENV_PREFIX}*).")
    env = EnvDefaults(SERVE_ENV)
    p.add_argument("repository", nargs="?" if env.has("REPOSITORY") else None, default=env.get("REPOSITORY"),
                   help="model repository: a local path, s3://BUCKET/PREFIX, gs://, as://")
    p.add_argument("--s3-endpoint", default=env.get("S3_ENDPOINT"),
                   help="S3-compatible endpoint URL for an s3:// repository (credentials: AWS_* variables)")
    p.add_argument("--host", default=env.get("HOST", "127.0.0.1"), help="address to bind (default: loopback only)")
    p.add_argument("--http-port", type=int, default=env.get("HTTP_PORT", 8000))
    p.add_argument("--grpc-port", type=int, default=env.get("GRPC_PORT", 8001))
    p.add_argument("--metrics-port", type=int, default=env.get("METRICS_PORT", 8002))
    p.add_argument("--timeout", type=float, default=env.get("TIMEOUT", 300.0), help="seconds to wait for the models to be ready")
    p.add_argument("--admin-token-file", default=None,
                   help=f"file holding a token (>= 16 chars); the {', '.join(RESTRICTED_APIS)} APIs then answer only "
                        f"requests carrying it (HTTP header '{ADMIN_HEADER}', gRPC metadata '{GRPC_ADMIN_HEADER}'). "
                        f"Default: ${TOKEN_ENV} if set")
    p.add_argument("--insecure", action="store_true",
                   help="serve beyond loopback without an admin token (refused otherwise: Triton's model-repository, "
                        "shared-memory, logging and trace APIs would be open to anyone who reaches the ports)")
    p.add_argument("--api-port", type=int, default=env.get("API_PORT"),
                   help="also serve the rerank HTTP APIs (Cohere v2, Jina/vLLM, TEI, NVIDIA NIM) on this port, bound to --host")
    p.add_argument("--api-model", default=env.get("API_MODEL"),
                   help="ensemble name(s) for the API, comma-separated (default: the ensembles in a local repository, "
                        "or those Triton's repository index lists for a remote one)")
    gateway_cli.add_server_flags(p, port_default=None)
    p.set_defaults(handler=_serve)


def _repo(args) -> int:
    from mxbai_triton.export.spec import KNOWN_MODELS, SPEC_FILENAME, ModelSpec

    from .generate import generate_examples, generate_repository

    if args.examples:
        if args.source:
            raise ValueError("--examples takes no SOURCE: it writes every known model x target")
        for path in generate_examples(*([args.out] if args.out else [])):
            print(path)
        return 0
    if not args.source or not args.out:
        raise ValueError("repo needs SOURCE and --out (or --examples)")
    source = Path(args.source)
    if (source / SPEC_FILENAME).is_file():
        spec, export_dir = ModelSpec.load(source), source
    elif args.source in KNOWN_MODELS:
        spec, export_dir = KNOWN_MODELS[args.source], None
    else:
        raise ValueError(f"{args.source}: neither an export directory (no {SPEC_FILENAME}) nor a known model")
    if args.special_tokens_in_text:
        spec = spec.with_overrides(special_tokens_in_text=args.special_tokens_in_text)
    root = generate_repository(
        args.out, spec, target=args.target, name=args.name, export_dir=export_dir,
        engine_dir=args.engine, instance_kind=args.instance_kind, padding=args.padding,
    )
    name = args.name or spec.triton_name
    print(f"wrote {args.target} repository for {spec.name} to {root}: models {name}, {name}_tokenizer, {name}_scorer")
    if export_dir is None:
        print("configs only: generate from an export directory to include tokenizer.json and the weights")
    return 0


def _publish(args) -> int:
    from .publish import parse_s3_url, publish

    counts = publish(args.repository, args.url, endpoint=args.endpoint, delete_extra=args.delete_extra)
    print(f"published {counts['files']} files ({counts['bytes'] / 1e6:.1f} MB) to {args.url}")
    if counts["extra"] and not counts["deleted"]:
        print(f"note: {counts['extra']} other objects under that prefix (--delete-extra removes them)")
    endpoint = f" --s3-endpoint {args.endpoint}" if args.endpoint else ""
    print(f"serve it: mxbai-triton serve {args.url}{endpoint}   "
          f"(tritonserver --model-repository={parse_s3_url(args.url).triton_url(args.endpoint)})")
    return 0


def _repository_url(repository: str, s3_endpoint: str | None) -> str:
    if not repository.startswith("s3://"):
        if s3_endpoint:
            raise ValueError("--s3-endpoint applies to s3:// repositories only")
        return repository
    if s3_endpoint is None or repository.startswith(("s3://http://", "s3://https://")):
        return repository
    from .publish import parse_s3_url

    return parse_s3_url(repository).triton_url(s3_endpoint)


def _admin_token(path: str | None) -> str | None:
    # Read from a file or the environment: a token on our command line would show in `ps`.
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(TOKEN_ENV) or None


def _serve(args) -> int:
    from mxbai_triton.processes import busy_ports, is_loopback, spawn, stop

    from .server import ServerError, TritonServer

    token = _admin_token(args.admin_token_file)
    if token is None and not is_loopback(args.host):
        exposure = (f"anyone who reaches the ports could use Triton's admin APIs ({', '.join(RESTRICTED_APIS)}), and "
                    "the bundled tritonserver predates the 2025 fixes for its shared-memory and HTTP CVEs")
        if not args.insecure:
            raise ValueError(f"refusing to serve on {args.host} without an admin token: {exposure}; set {TOKEN_ENV} or "
                             "--admin-token-file, bind 127.0.0.1, or pass --insecure to serve anyway")
        print(f"warning: serving on {args.host} without an admin token (--insecure): {exposure}", file=sys.stderr)
    if args.api_port is not None and busy_ports(args.host, {"API": args.api_port}):
        raise ServerError(f"cannot serve on {args.host}: API port {args.api_port} already in use by another process "
                          "(choose another: --api-port)")
    server = TritonServer(
        _repository_url(args.repository, args.s3_endpoint), http_port=args.http_port, grpc_port=args.grpc_port,
        metrics_port=args.metrics_port, host=args.host, admin_token=token,
        stream_level=logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.WARNING,
    )
    gateway_command = None if args.api_port is None else _gateway_command(args, server.grpc_url, restricted=token is not None)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    gateway = None
    try:
        server.start(timeout=args.timeout, stream_log=True)
        print(
            f"models ready: HTTP {server.http_url}, gRPC {server.grpc_url}, metrics {args.host}:{args.metrics_port} "
            "(Ctrl-C stops)", flush=True,
        )
        if gateway_command is not None:
            gateway = spawn(gateway_command)
        while server.process.poll() is None:
            if gateway is not None and gateway.poll() is not None:
                print(f"the rerank API gateway exited with status {gateway.returncode}; stopping", file=sys.stderr)
                return 1
            time.sleep(0.5)
        print(f"tritonserver exited with code {server.process.returncode}: {server.failure_reason()}", file=sys.stderr)
        return 1
    finally:
        try:
            stop(gateway, 10)
        finally:
            server.stop()


def _gateway_command(args, grpc_url: str, *, restricted: bool) -> list[str]:
    """`mxbai-triton api` in front of this server, run as a child process (its own event loop and logs)."""
    from .generate import ensemble_names
    from .preflight import is_remote

    if args.api_model:
        models = args.api_model
    elif not is_remote(args.repository):
        models = ",".join(ensemble_names(args.repository))  # named: works with the admin token too
    elif restricted:
        raise ValueError("with an admin token the gateway cannot list Triton's models: name them with --api-model")
    else:
        models = None  # the gateway finds them in Triton's repository index
    verbosity = ["-v"] if args.verbose else ["-q"] if args.quiet else []
    return [sys.executable, "-m", "mxbai_triton", *verbosity, "api", "--triton", grpc_url, *(["--model", models] if models else []),
            "--host", args.host, "--port", str(args.api_port), *gateway_cli.forwarded_args(args)]
