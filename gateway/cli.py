"""CLI of the gateway stage: `api`, the rerank HTTP APIs in front of running Triton servers."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mxbai_triton.console import LOG_FORMATS, EnvDefaults, configure_logging
from mxbai_triton.processes import busy_ports

from .admission import AdmissionLimits

ENV_PREFIX = "MXBAI_API_"
# Seconds the drain outlasts --api-timeout by default: every accepted request meets its own deadline first.
DRAIN_MARGIN = 5.0


_env = EnvDefaults(ENV_PREFIX).get


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "api", help="serve the Cohere v2, Jina/vLLM, TEI and NVIDIA NIM rerank HTTP APIs in front of running Triton servers",
        description=f"Flags can also come from the environment: {ENV_PREFIX}{ENV_NAMES[0]}, "
                    + ", ".join(f"_{name}" for name in ENV_NAMES[1:]) + ".",
    )
    p.add_argument("--triton", default=_env("TRITON", "127.0.0.1:8001"),
                   help="gRPC host:port of Triton, comma-separated for replicas (default 127.0.0.1:8001)")
    p.add_argument("--model", default=_env("MODEL"),
                   help="serve only these ensemble(s), comma-separated, the first answering requests that name no "
                        "model (default: every rerank ensemble Triton serves, found in its repository index)")
    add_server_flags(p, port_default=8080)
    p.set_defaults(handler=_api)


def add_server_flags(p: argparse.ArgumentParser, *, port_default: int | None) -> None:
    """The gateway's HTTP flags, shared by `api` and `serve --api-port`."""
    if port_default is not None:
        p.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="address to bind (default: loopback only)")
        p.add_argument("--port", type=int, default=_env("PORT", port_default), help=f"HTTP port (default {port_default})")
    p.add_argument("--api-timeout", type=float, default=_env("TIMEOUT", 60.0),
                   help="seconds a rerank request may take in all before a 504 (default 60)")
    p.add_argument("--api-retry-for", type=float, default=_env("RETRY_FOR", 10.0),
                   help="seconds of retries over the Triton endpoints while none answers, before a 503 (default 10)")
    p.add_argument("--api-refresh", type=float, default=_env("REFRESH", 5.0),
                   help="seconds between two looks at Triton's repository index for ensembles loaded or unloaded (default 5)")
    p.add_argument("--api-key-file", default=_env("KEY_FILE"),
                   help="file of accepted API keys, one per line: requests then need 'Authorization: Bearer <key>'")
    p.add_argument("--access-log", action="store_true", default=_flag("ACCESS_LOG"),
                   help="log one line per rerank request: id, API, model, class, status, documents, tokens, timings")
    p.add_argument("--log-format", choices=LOG_FORMATS, default=_env("LOG_FORMAT", "text"),
                   help="json: every log line a JSON object, and one per rerank request (as --access-log) "
                        "(docs/observability.md)")
    g = p.add_argument_group("limits (README \"Security\")")
    g.add_argument("--api-max-body-mib", type=float, default=_env("MAX_BODY_MIB", 64.0),
                   help="largest request body in MiB, chunked or not: refused with 413 once that much arrived (default 64)")
    g.add_argument("--api-buffered-mib", type=float, default=_env("BUFFERED_MIB", 128.0),
                   help="MiB of request bodies all requests together may hold; past it 503 + Retry-After (default 128)")
    g.add_argument("--api-body-timeout", type=float, default=_env("BODY_TIMEOUT", 30.0),
                   help="seconds a client has to send a request's body once its headers are in, then 408 (default 30)")
    g.add_argument("--api-header-timeout", type=float, default=_env("HEADER_TIMEOUT", 10.0),
                   help="seconds a client has to send a request's headers, then the connection is closed (default 10)")
    g.add_argument("--api-max-connections", type=int, default=_env("MAX_CONNECTIONS", 256),
                   help="open connections and requests in flight together; past it requests get 503 (default 256)")
    g.add_argument("--api-max-request-tokens", type=int, default=_env("MAX_REQUEST_TOKENS", 0),
                   help="largest bound on one request's prompt tokens (UTF-8 bytes of each prompt, at most the model's "
                        "cap), else 413 (default 0: the ensemble's max_documents_per_request x max_prompt_tokens)")
    g.add_argument("--api-rate-requests", type=float, default=_env("RATE_REQUESTS", 0.0),
                   help="requests per second per API key (per client address without --api-key-file); past it 429 + "
                        "Retry-After (default 0: off)")
    g.add_argument("--api-rate-tokens", type=float, default=_env("RATE_TOKENS", 0.0),
                   help="prompt tokens per second per API key (per client address without keys), 429 + Retry-After "
                        "(default 0: off)")
    d = AdmissionLimits()
    g.add_argument("--api-admit-requests", default=_env("ADMIT_REQUESTS", f"{d.interactive_requests},{d.bulk_requests}"),
                   help="admission bound: INTERACTIVE,BULK requests being scored at once; past it 503 + Retry-After at once "
                        f"(default {d.interactive_requests},{d.bulk_requests}; 0: off; docs/operations.md)")
    g.add_argument("--api-admit-tokens", default=_env("ADMIT_TOKENS", f"{d.interactive_tokens},{d.bulk_tokens}"),
                   help="admission bound: INTERACTIVE,BULK prompt tokens (their UTF-8 bound) being scored at once; past it "
                        f"503 + Retry-After at once (default {d.interactive_tokens},{d.bulk_tokens}; 0: off)")
    g.add_argument("--api-drain-timeout", type=float, default=_env("DRAIN_TIMEOUT"),
                   help="on SIGTERM, seconds the requests in flight have to finish before the gateway exits (default: "
                        "--api-timeout + 5, so that every accepted request meets its own deadline first)")
    g.add_argument("--api-open-docs", action="store_true", default=_flag("OPEN_DOCS"),
                   help="serve /docs and /openapi.json without a key (default: the same key rule as the rerank routes)")
    g.add_argument("--api-metrics-port", type=int, default=_env("METRICS_PORT"),
                   help="serve the gateway's Prometheus metrics on this port, with no key, instead of /metrics on the API "
                        "port (which follows the key rule)")


# Every flag's environment twin (MXBAI_API_<NAME>), named in `api --help`.
ENV_NAMES = ("TRITON", "MODEL", "HOST", "PORT", "TIMEOUT", "RETRY_FOR", "REFRESH", "KEY_FILE", "ACCESS_LOG", "MAX_BODY_MIB",
             "BUFFERED_MIB", "BODY_TIMEOUT", "HEADER_TIMEOUT", "MAX_CONNECTIONS", "MAX_REQUEST_TOKENS", "RATE_REQUESTS",
             "RATE_TOKENS", "ADMIT_REQUESTS", "ADMIT_TOKENS", "DRAIN_TIMEOUT", "OPEN_DOCS", "METRICS_PORT", "LOG_FORMAT")


def _forwarded_flags() -> tuple[str, ...]:
    """What `serve --api-port` passes on to the gateway it starts: every flag of add_server_flags but --host/--port."""
    probe = argparse.ArgumentParser(add_help=False)
    add_server_flags(probe, port_default=None)
    return tuple(action.dest for action in probe._actions)



def _flag(name: str) -> bool:
    return _env(name, "") not in ("", "0", "false")


def forwarded_args(args) -> list[str]:
    """The gateway flags of `args` as command-line arguments (booleans when set, values when given)."""
    out: list[str] = []
    for name in _forwarded_flags():
        value = getattr(args, name)
        flag = "--" + name.replace("_", "-")
        if value is True:
            out.append(flag)
        elif name == "log_format" and value == "text":
            continue  # the default: the gateway's command line stays as it was
        elif value not in (None, False):
            out += [flag, str(value)]
    return out


def read_api_keys(path: str | None) -> frozenset[str]:
    if not path:
        return frozenset()
    keys = frozenset(line.strip() for line in Path(path).read_text().splitlines() if line.strip() and not line.startswith("#"))
    if not keys:
        raise ValueError(f"{path}: no API keys in it (one per line)")
    return keys


def run_gateway(triton: str, models: str | None, host: str, port: int, args) -> int:
    from mxbai_triton.processes import is_loopback

    from .app import create_app
    from .backend import BackendSettings
    from .guard import MIB, GuardSettings
    from .http_server import ServerSettings, serve
    from .metrics import GatewayMetrics

    settings = BackendSettings(
        urls=tuple(u.strip() for u in triton.split(",") if u.strip()),
        models=tuple(m.strip() for m in (models or "").split(",") if m.strip()),
        timeout=args.api_timeout, retry_for=args.api_retry_for, refresh_every=args.api_refresh,
    )
    if busy_ports(host, {"API": port}):
        raise RuntimeError(f"cannot serve on {host}: API port {port} already in use by another process (choose another: --port)")
    guard = GuardSettings(
        max_body_bytes=int(args.api_max_body_mib * MIB), buffered_bytes=int(args.api_buffered_mib * MIB),
        body_timeout=args.api_body_timeout, max_request_tokens=args.api_max_request_tokens,
        rate_requests=args.api_rate_requests, rate_tokens=args.api_rate_tokens,
    )
    server = ServerSettings(max_connections=args.api_max_connections, header_timeout=args.api_header_timeout,
                            drain_timeout=drain_timeout(args))
    (interactive_requests, bulk_requests), (interactive_tokens, bulk_tokens) = (
        _pair(args.api_admit_requests, "--api-admit-requests"), _pair(args.api_admit_tokens, "--api-admit-tokens"))
    admission = AdmissionLimits(interactive_requests=interactive_requests, bulk_requests=bulk_requests,
                                interactive_tokens=interactive_tokens, bulk_tokens=bulk_tokens)
    api_keys = read_api_keys(args.api_key_file)
    metrics = GatewayMetrics()
    json_logs = args.log_format == "json"
    if json_logs:
        configure_logging(getattr(args, "verbose", False), getattr(args, "quiet", False), "json")
    app = create_app(settings, api_keys=api_keys, guard=guard, open_docs=args.api_open_docs, metrics=metrics,
                     metrics_route=args.api_metrics_port is None, admission=admission,
                     access_log=args.access_log or json_logs)
    if not api_keys and not is_loopback(host):
        print(f"warning: the rerank API on {host}:{port} has no API keys: anyone who reaches the port can use it and read "
              "its metrics; set --api-key-file (MXBAI_API_KEY_FILE)", file=sys.stderr, flush=True)
    if args.api_metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(args.api_metrics_port, addr=host, registry=metrics.registry)
    served = f"models {', '.join(settings.models)}" if settings.models else "every rerank ensemble it serves"
    started = (f"rerank API on http://{host}:{port} (POST /v2/rerank, /v1/rerank, /rerank, /v1/ranking; /docs) -> Triton "
               f"{', '.join(settings.urls)}, {served}")
    if json_logs:
        logging.getLogger("mxbai_triton.gateway").info(started)
    else:
        print(started, flush=True)
    serve(app, host, port, server, log_level=_uvicorn_level(args), json_logs=json_logs)
    return 0


def drain_timeout(args) -> float:
    """Seconds a drain may take: --api-drain-timeout, else --api-timeout + DRAIN_MARGIN."""
    return args.api_drain_timeout if args.api_drain_timeout is not None else args.api_timeout + DRAIN_MARGIN


def _pair(text: str, flag: str) -> tuple[int, int]:
    """"INTERACTIVE,BULK" as two integers >= 0."""
    parts = str(text).split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"{flag} takes INTERACTIVE,BULK (two integers >= 0, 0: off), got {text!r}")
    return int(parts[0]), int(parts[1])


def _uvicorn_level(args) -> str:
    """uvicorn's own lines follow -v/-q; its start-up chatter stays hidden by default (the line above says it all)."""
    if getattr(args, "verbose", False):
        return "debug"
    if getattr(args, "quiet", False):
        return "error"
    return "warning"


def _api(args) -> int:
    return run_gateway(args.triton, args.model, args.host, args.port, args)
