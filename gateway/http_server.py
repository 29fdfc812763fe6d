"""The HTTP server under the gateway: uvicorn on h11 without a server header, a cap on connections, and a
deadline for each request's headers (uvicorn has none: a client could hold a connection by sending them slowly)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


@dataclass(frozen=True)
class ServerSettings:
    """Connections the server takes, how long a client may be idle or slow with its headers, how long it drains.

    Args:
        max_connections: Open connections and requests in flight together; past it new requests get
            503 (uvicorn's limit_concurrency).
        header_timeout: Seconds from a connection's first byte (or a new request's) to the end of its
            headers; then the connection is closed.
        keep_alive: Seconds an idle keep-alive connection stays open.
        drain_timeout: Seconds the requests in flight have to finish after SIGTERM/SIGINT.
    """

    max_connections: int = 256
    header_timeout: float = 10.0
    keep_alive: int = 5
    drain_timeout: float = 65.0

    def __post_init__(self):
        if self.max_connections < 1 or self.header_timeout <= 0 or self.drain_timeout < 0:
            raise ValueError("--api-max-connections must be >= 1, --api-header-timeout > 0 and --api-drain-timeout >= 0")


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers take longer than `header_timeout`."""

    header_timeout = 10.0
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # h11 leaves the client IDLE until a request's headers are whole; a request's first bytes on a
        # kept-alive connection start the clock again.
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            if self._header_deadline is None:
                self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def serve(app, host: str, port: int, settings: ServerSettings, *, log_level: str, json_logs: bool = False) -> None:
    """Run `app` until SIGINT/SIGTERM, then drain: readiness off and the listening socket closed at once (new
    connections are refused, so a load balancer moves on), the requests in flight answered (at most
    `drain_timeout` seconds), then exit. uvicorn's access log stays off: the gateway writes its own line per
    request (gateway/telemetry.py); `json_logs`: uvicorn's own lines as JSON objects too."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            app.state.draining = True  # /health answers 503 on connections still open
            super().handle_exit(sig, frame)

    protocol = type("GatewayHTTPProtocol", (HeaderDeadlineProtocol,), {"header_timeout": settings.header_timeout})
    config = uvicorn.Config(app, host=host, port=port, http=protocol, server_header=False,
                            limit_concurrency=settings.max_connections, timeout_keep_alive=settings.keep_alive,
                            timeout_graceful_shutdown=settings.drain_timeout, access_log=False, log_level=log_level,
                            **({"log_config": _JSON_LOG_CONFIG} if json_logs else {}))
    DrainingServer(config).run()



_JSON_LOG_CONFIG = {
    "version": 1, "disable_existing_loggers": False,
    "formatters": {"json": {"()": "mxbai_triton.console.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "loggers": {"uvicorn": {"handlers": ["stderr"], "propagate": False}},
}
