"""CLI of the gateway stage: `api`, the rerank HTTP APIs in front of running Triton servers."""

from __future__ import annotations

import argparse
from pathlib import Path

from mxbai_triton.console import EnvDefaults
from mxbai_triton.processes import busy_ports

ENV_PREFIX = "MXBAI_API_"


_env = EnvDefaults(ENV_PREFIX).get


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "api", help="serve the Cohere v2, Jina/vLLM, TEI and NVIDIA NIM rerank HTTP APIs in front of running Triton servers",
        description=f"Flags can also come from the environment: {ENV_PREFIX}TRITON, _MODEL, _HOST, _PORT, _TIMEOUT, "
                    "_RETRY_FOR, _REFRESH, _KEY_FILE, _ACCESS_LOG.",
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
    p.add_argument("--access-log", action="store_true", default=_env("ACCESS_LOG", "") not in ("", "0", "false"),
                   help="log every HTTP request")


def read_api_keys(path: str | None) -> frozenset[str]:
    if not path:
        return frozenset()
    keys = frozenset(line.strip() for line in Path(path).read_text().splitlines() if line.strip() and not line.startswith("#"))
    if not keys:
        raise ValueError(f"{path}: no API keys in it (one per line)")
    return keys


def run_gateway(triton: str, models: str | None, host: str, port: int, args) -> int:
    import uvicorn

    from .app import create_app
    from .backend import BackendSettings

    settings = BackendSettings(
        urls=tuple(u.strip() for u in triton.split(",") if u.strip()),
        models=tuple(m.strip() for m in (models or "").split(",") if m.strip()),
        timeout=args.api_timeout, retry_for=args.api_retry_for, refresh_every=args.api_refresh,
    )
    if busy_ports(host, {"API": port}):
        raise RuntimeError(f"cannot serve on {host}: API port {port} already in use by another process (choose another: --port)")
    app = create_app(settings, api_keys=read_api_keys(args.api_key_file))
    served = f"models {', '.join(settings.models)}" if settings.models else "every rerank ensemble it serves"
    print(f"rerank API on http://{host}:{port} (POST /v2/rerank, /v1/rerank, /rerank, /v1/ranking; /docs) -> Triton "
          f"{', '.join(settings.urls)}, {served}", flush=True)
    uvicorn.run(app, host=host, port=port, access_log=args.access_log, log_level=_uvicorn_level(args))
    return 0


def _uvicorn_level(args) -> str:
    """uvicorn's own lines follow -v/-q; its start-up chatter stays hidden by default (the line above says it all)."""
    if getattr(args, "verbose", False):
        return "debug"
    if getattr(args, "quiet", False):
        return "error"
    return "info" if args.access_log else "warning"


def _api(args) -> int:
    return run_gateway(args.triton, args.model, args.host, args.port, args)
