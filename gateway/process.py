"""Run `mxbai-triton api` as a child process on a free port: start, wait until it answers, stop (tests, benchmarks)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from mxbai_triton.processes import free_port, spawn, stop


class GatewayProcess:
    """The gateway in front of Triton gRPC `triton` (host:port, comma-separated for replicas), serving `models`
    (None: every rerank ensemble found there)."""

    def __init__(self, triton: str, models: str | None, *extra: str, port: int | None = None, log: Path | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "mxbai_triton", "api", "--triton", triton,
                        *(["--model", models] if models else []), "--port", str(self.port), *extra]
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> "GatewayProcess":
        if self.log:
            with open(self.log, "ab") as out:  # the child keeps its own copy of the descriptor
                self.process = spawn(self.command, stdout=out, stderr=subprocess.STDOUT)
        else:
            self.process = spawn(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited with status {self.process.returncode}: {' '.join(self.command)}")
            try:
                with urllib.request.urlopen(f"{self.url}/live", timeout=1.0):
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the gateway did not answer on {self.url} within {timeout:g}s")

    def stop(self) -> None:
        stop(self.process, 10)

    def __enter__(self) -> "GatewayProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
