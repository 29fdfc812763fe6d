"""Graceful drain of a Triton server: a flag file the dispatch step reads, and the gauge of requests it is dispatching.

Triton cannot drain a BLS model by itself: after SIGTERM it refuses every new inference request,
the sub-batches a dispatching request still has to send included ("Server not ready"), so the
requests in flight fail. A drain therefore happens before the signal: the flag makes the dispatch
step refuse requests it has not started (unavailable: nothing was computed, a client retries on
another endpoint), the requests it has started finish, and once none is left Triton is stopped.
"""

from __future__ import annotations

import os

from .errors import ErrorKind, tagged

# The flag's path, set in the environment of tritonserver (its python stubs inherit it).
DRAIN_FILE_ENV = "MXBAI_TRITON_DRAIN_FILE"
# Gauge on Triton's metrics port, label `model`: requests the dispatch step has started and not answered.
IN_FLIGHT_GAUGE = "mxbai_dispatch_requests_in_flight"
# Triton's own gauge of requests waiting in a model's queue.
PENDING_GAUGE = "nv_inference_pending_request_count"
REFUSAL = tagged(ErrorKind.BACKEND_UNAVAILABLE, "the server is draining (shutting down): send the request to another one")


def drain_file() -> str | None:
    return os.environ.get(DRAIN_FILE_ENV) or None


def draining(path: str | None) -> bool:
    """Whether the drain flag at `path` is set (no path: never)."""
    return path is not None and os.path.exists(path)
