"""Drain a running Triton before it is stopped (core/drain.py says why): set the flag, wait until no request is left.

`serve` calls it on SIGTERM; a Kubernetes pod runs it as tritonserver's preStop hook:
    python3 -m mxbai_triton.model_repository.drain --metrics http://127.0.0.1:8002 --flag /tmp/drain \
        --after-port 8080 --timeout 70
"""

from __future__ import annotations

import argparse
import socket
import time
import urllib.error
from pathlib import Path
from typing import TYPE_CHECKING

from mxbai_triton.core.deadline import Deadline
from mxbai_triton.core.drain import IN_FLIGHT_GAUGE, PENDING_GAUGE

if TYPE_CHECKING:
    from .server import TritonServer

# Seconds between two looks at the metrics port.
_POLL = 0.1


def in_flight(metrics_url: str) -> float:
    """Requests Triton still holds for the dispatch: started by it, or waiting in any model's queue."""
    from .metrics_port import read_counters

    totals = read_counters(metrics_url, (IN_FLIGHT_GAUGE, PENDING_GAUGE))
    return totals[IN_FLIGHT_GAUGE] + totals[PENDING_GAUGE]


def wait_drained(metrics_url: str, deadline: Deadline, flag: str | Path | None = None) -> bool:
    """Set the drain flag (when given), then wait until no request is in flight twice in a row, or the deadline
    passes; True when drained. A metrics port that stopped answering means the server is gone: drained."""
    if flag is not None:
        Path(flag).touch()
    idle_looks = 0
    while not deadline.passed():
        try:
            idle_looks = idle_looks + 1 if in_flight(metrics_url) == 0 else 0
        except (urllib.error.URLError, OSError):
            return True
        if idle_looks >= 2:
            return True
        time.sleep(_POLL)
    return False


def wait_port_closed(host: str, port: int, deadline: Deadline) -> None:
    """Until nothing accepts connections on host:port (a gateway in front has started its own drain)."""
    while not deadline.passed():
        try:
            socket.create_connection((host, port), timeout=1).close()
        except OSError:
            return
        time.sleep(_POLL)


def drain(server: "TritonServer", timeout: float) -> bool:
    """Refuse new requests on `server`, and wait up to `timeout` seconds until the started ones are answered.

    Triton's own SIGTERM would fail them: it refuses the sub-batches they still have to send.
    """
    if server.process is None or server.process.poll() is not None:
        return True
    return wait_drained(server.metrics_url, Deadline.after(timeout), server.drain_flag)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="drain a running tritonserver that serves mxbai-triton ensembles")
    p.add_argument("--metrics", default="http://127.0.0.1:8002", help="Triton's metrics base URL")
    p.add_argument("--flag", help="the drain flag's path (tritonserver's MXBAI_TRITON_DRAIN_FILE)")
    p.add_argument("--after-port", type=int, help="first wait until the gateway on this loopback port stops accepting")
    p.add_argument("--timeout", type=float, default=70.0, help="seconds to wait in all")
    args = p.parse_args(argv)
    deadline = Deadline.after(args.timeout)
    if args.after_port:
        wait_port_closed("127.0.0.1", args.after_port, deadline)
    return 0 if wait_drained(args.metrics, deadline, args.flag) else 1


if __name__ == "__main__":
    raise SystemExit(main())
