"""Run `mxbai-triton api` as a child process: start, wait until it answers, stop (serve, tests, benchmarks)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from mxbai_triton.processes import free_port, spawn, stop

# Where a wildcard bind is reached from this host.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class GatewayProcess:
    """The gateway in front of Triton gRPC `triton` (host:port, comma-separated for replicas), serving `models`
    (None: every rerank ensemble found there), bound to `host`:`port` (default: loopback, a free port).

    `verbosity` goes before the command (-v/-q); its output goes to `log` (a file), to ours (`log="inherit"`)
    or nowhere. `env`: variables set for it on top of ours (e.g. OTEL_*).
    """

    def __init__(self, triton: str, models: str | None, *extra: str, port: int | None = None,
                 host: str = "127.0.0.1", verbosity: tuple[str, ...] = (), log: Path | str | None = None,
                 env: dict[str, str] | None = None):
        self.port = port or free_port()
        probe_host = _WILDCARDS.get(host, host)
        self.url = f"http://{f'[{probe_host}]' if ':' in probe_host else probe_host}:{self.port}"
        self.command = [sys.executable, "-m", "mxbai_triton", *verbosity, "api", "--triton", triton,
                        *(["--model", models] if models else []), "--host", host, "--port", str(self.port), *extra]
        self.log = log
        self.env = None if env is None else {**os.environ, **env}
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> "GatewayProcess":
        if self.log == "inherit":
            self.process = spawn(self.command, env=self.env)
        elif self.log:
            with open(self.log, "ab") as out:  # the child keeps its own copy of the descriptor
                self.process = spawn(self.command, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        else:
            self.process = spawn(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the rerank API gateway exited with status {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/live", timeout=1.0):
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the rerank API gateway did not answer on {self.url} within {timeout:g}s")

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM: the gateway drains (answers what it took) and exits; SIGKILL after `grace` seconds."""
        stop(self.process, grace)

    def __enter__(self) -> "GatewayProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
