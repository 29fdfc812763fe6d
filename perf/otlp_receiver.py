"""An OTLP/HTTP trace receiver on loopback (tests, the tracing benchmark): takes the JSON encoding (what Triton's
opentelemetry-cpp 1.13 exporter and ours send) at POST /v1/traces, keeps every span with its service, draws a trace."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict
    start_ns: int = 0
    end_ns: int = 0


def _value(value: dict):
    """An OTLP JSON AnyValue as Python (int64 come as strings)."""
    (kind, raw), = value.items() if value else (("stringValue", None),)
    return int(raw) if kind == "intValue" else raw


def _attributes(items: list) -> dict:
    return {item["key"]: _value(item.get("value", {})) for item in items or ()}


class OTLPReceiver:
    """ThreadingHTTPServer on 127.0.0.1:0; `endpoint` is the base URL (OTEL_EXPORTER_OTLP_ENDPOINT)."""

    def __init__(self):
        self.spans: list[Span] = []
        self.bodies = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's spelling
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path != "/v1/traces" or not self.headers.get("content-type", "").startswith("application/json"):
                    self.send_response(415 if self.path == "/v1/traces" else 404)
                    self.end_headers()
                    return
                receiver.add(json.loads(body))
                reply = b"{}"
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._lock = threading.Lock()

    def add(self, request: dict) -> None:
        spans = []
        for resource_spans in request.get("resourceSpans", ()):
            service = _attributes(resource_spans.get("resource", {}).get("attributes")).get("service.name", "")
            for scope_spans in resource_spans.get("scopeSpans", ()):
                for span in scope_spans.get("spans", ()):
                    spans.append(Span(service, span["name"], span["traceId"].lower(), span["spanId"].lower(),
                                      (span.get("parentSpanId") or "").lower(), _attributes(span.get("attributes")),
                                      int(span.get("startTimeUnixNano", 0)), int(span.get("endTimeUnixNano", 0))))
        with self._lock:
            self.spans += spans
            self.bodies += 1

    def trace(self, trace_id: str) -> list[Span]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def wait_for(self, trace_id: str, done, limit: float = 60.0) -> list[Span]:
        """The trace's spans once `done(spans)` holds (a guard `limit` against a hang, not a measurement)."""
        deadline = time.monotonic() + limit
        while not done(spans := self.trace(trace_id)) and time.monotonic() < deadline:
            time.sleep(0.05)
        return spans

    def __enter__(self) -> "OTLPReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def tree(spans: list[Span], root_parent: str = "") -> str:
    """The spans as an indented tree, children in start order: "name [service] duration attributes"; spans whose
    parent is not among them (the caller's span) are roots."""
    ids = {s.span_id for s in spans}
    children: dict[str, list[Span]] = {}
    for span in spans:
        children.setdefault(span.parent_id if span.parent_id in ids else root_parent, []).append(span)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for span in sorted(children.get(parent, ()), key=lambda s: (s.start_ns, s.name)):
            shown = {k: v for k, v in span.attributes.items() if k in _SHOWN}
            lines.append(f"{'  ' * depth}{span.name} [{span.service}] {(span.end_ns - span.start_ns) / 1e6:.2f} ms"
                         + (f" {shown}" if shown else ""))
            walk(span.span_id, depth + 1)

    walk(root_parent, 0)
    return "\n".join(lines)


# Attributes worth a look in a drawn tree: ids that join the stages, and what a sub-batch was.
_SHOWN = ("mxbai.request_id", "triton.request_id", "mxbai.rows", "mxbai.padded_length", "mxbai.outcome")
