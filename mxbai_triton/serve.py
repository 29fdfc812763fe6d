"""`mxbai-triton serve`: the bundled tritonserver on a model repository, and optionally the rerank HTTP API in front of it."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

from mxbai_triton.console import EnvDefaults, configure_logging
from mxbai_triton.gateway import cli as gateway_cli
from mxbai_triton.model_repository.server import ADMIN_HEADER, GRPC_ADMIN_HEADER, RESTRICTED_APIS, TOKEN_ENV

SERVE_ENV = "MXBAI_TRITON_"


def register(commands: argparse._SubParsersAction) -> None:
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
    p.add_argument("--http-port", type=int, default=env.get("HTTP_PORT", 8000), help="Triton's HTTP/REST port")
    p.add_argument("--grpc-port", type=int, default=env.get("GRPC_PORT", 8001), help="Triton's gRPC port")
    p.add_argument("--metrics-port", type=int, default=env.get("METRICS_PORT", 8002), help="Triton's Prometheus metrics port")
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
    p.add_argument("--trace-config", action="append", metavar="SETTING",
                   help="a tritonserver --trace-config setting (repeatable), e.g. rate=100 or opentelemetry,url=URL; with "
                        "an OTEL_EXPORTER_OTLP_ENDPOINT, serve sets Triton's OpenTelemetry tracing from the OTEL_* "
                        "variables and these replace its settings of the same name (docs/observability.md)")
    gateway_cli.add_server_flags(p, port_default=None)
    p.set_defaults(handler=_serve)


def _repository_url(repository: str, s3_endpoint: str | None) -> str:
    if not repository.startswith("s3://"):
        if s3_endpoint:
            raise ValueError("--s3-endpoint applies to s3:// repositories only")
        return repository
    if s3_endpoint is None or repository.startswith(("s3://http://", "s3://https://")):
        return repository
    from mxbai_triton.model_repository.publish import parse_s3_url

    return parse_s3_url(repository).triton_url(s3_endpoint)


def _admin_token(path: str | None) -> str | None:
    # Read from a file or the environment: a token on our command line would show in `ps`.
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(TOKEN_ENV) or None


def _serve(args) -> int:
    from mxbai_triton.model_repository.drain import drain as wait_drained
    from mxbai_triton.model_repository.server import ServerError, TritonServer
    from mxbai_triton.model_repository.trace_config import trace_args, trace_settings
    from mxbai_triton.processes import busy_ports, is_loopback

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
    if args.log_format == "json":
        configure_logging(args.verbose, args.quiet, "json")
    traces = trace_settings(os.environ, behind_gateway=args.api_port is not None, given=args.trace_config or ())
    server = TritonServer(
        _repository_url(args.repository, args.s3_endpoint), http_port=args.http_port, grpc_port=args.grpc_port,
        metrics_port=args.metrics_port, host=args.host, admin_token=token, extra_args=trace_args(traces),
        stream_level=logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.WARNING,
        log_format=args.log_format,
    )
    gateway = None if args.api_port is None else _gateway(args, server.grpc_url, restricted=token is not None)
    drain = gateway_cli.drain_timeout(args)
    # SIGTERM (a rollout, a scale-in) drains: the gateway first (it stops accepting and answers what it
    # took), then Triton (new requests refused as unavailable, started ones answered), then exit 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Set explicitly: a script's `serve &` starts with SIGINT ignored (bash does that to background jobs) and
    # Python keeps an ignored disposition, so Ctrl-C or `kill -INT` would do nothing.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    say = (lambda _text: None) if args.quiet else (lambda text: _say(args, text))
    ready = False
    try:
        server.start(timeout=args.timeout, stream_log=True)
        ready = True
        tracing = next((f", traces to {s.split('=', 1)[1]}" for s in traces if s.startswith("opentelemetry,url=")), "")
        _say(args, f"models ready: HTTP {server.http_url}, gRPC {server.grpc_url}, metrics {args.host}:{args.metrics_port}"
                   f"{_precisions(server)}{tracing} (Ctrl-C stops)")
        if gateway is not None:
            gateway.start(timeout=60)
        while server.process.poll() is None:
            if gateway is not None and gateway.process.poll() is not None:
                print(f"the rerank API gateway exited with status {gateway.process.returncode}; stopping", file=sys.stderr)
                return 1
            time.sleep(0.5)
        print(f"tritonserver exited with code {server.process.returncode}: {server.failure_reason()}", file=sys.stderr)
        return 1
    finally:
        if ready:
            say(f"stopping: answering the requests already accepted (up to {drain:g} s), then stopping Triton ...")
        try:
            if gateway is not None:
                gateway.stop(grace=drain + gateway_cli.DRAIN_MARGIN)
            wait_drained(server, drain)
        finally:
            server.stop()
        if ready:
            say("stopped")


def _say(args, line: str) -> None:
    """A status line on stdout, or a JSON log line with --log-format json."""
    if args.log_format == "json":
        logging.getLogger("mxbai_triton.serve").info(line)
    else:
        print(line, flush=True)


def _precisions(server) -> str:
    """", scorer NAME: bf16 on OpenVINO" for each python scorer, as it loaded (the GPU targets' dtype is in their config)."""
    from mxbai_triton.model_repository.metrics_port import scorer_precisions

    try:
        found = scorer_precisions(server.metrics_url)
    except OSError as error:  # the server is up: say why the precision is missing rather than stop it
        return f", scorer precision unread ({error})"
    return "".join(f", scorer {model}: {what}" for model, what in sorted(found.items()))


def _gateway(args, grpc_url: str, *, restricted: bool):
    """`mxbai-triton api` in front of this server, as a child process (its own event loop and logs)."""
    from mxbai_triton.gateway.process import GatewayProcess
    from mxbai_triton.model_repository.generate import ensemble_names
    from mxbai_triton.model_repository.preflight import is_remote

    if args.api_model:
        models = args.api_model
    elif not is_remote(args.repository):
        models = ",".join(ensemble_names(args.repository))  # named: works with the admin token too
    elif restricted:
        raise ValueError("with an admin token the gateway cannot list Triton's models: name them with --api-model")
    else:
        models = None  # the gateway finds them in Triton's repository index
    verbosity = ["-v"] if args.verbose else ["-q"] if args.quiet else []
    return GatewayProcess(grpc_url, models, *gateway_cli.forwarded_args(args), host=args.host, port=args.api_port,
                          verbosity=tuple(verbosity), log="inherit")
