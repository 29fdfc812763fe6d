"""OpenTelemetry from the standard OTEL_* environment: off unless an OTLP endpoint is set; spans go out as OTLP/HTTP
JSON, the encoding Triton's own exporter speaks (one collector port for every stage)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

log = logging.getLogger(__name__)

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# Service names when OTEL_SERVICE_NAME is not set; with it, the gateway takes it as is and the others add a suffix.
GATEWAY_SERVICE, DISPATCH_SUFFIX, TRITON_SUFFIX = "mxbai-triton-gateway", "-dispatch", "-triton"
_BASE_SERVICE = "mxbai-triton"


def tracing_configured(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint, and neither OTEL_SDK_DISABLED nor OTEL_TRACES_EXPORTER=none."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(env.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def traces_url(env: Mapping[str, str] = os.environ) -> str:
    """The full OTLP/HTTP traces URL the environment names (the signal-specific variable as is, else the base + /v1/traces)."""
    specific = env.get(ENDPOINT_VARIABLES[0], "").strip()
    if specific:
        return specific
    return env.get(ENDPOINT_VARIABLES[1], "").strip().rstrip("/") + "/v1/traces"


def service_name(suffix: str = "", env: Mapping[str, str] = os.environ) -> str:
    """OTEL_SERVICE_NAME (+ `suffix` for the stages behind the gateway), else ours."""
    given = env.get("OTEL_SERVICE_NAME", "").strip()
    if given:
        return given + suffix
    return GATEWAY_SERVICE if not suffix else _BASE_SERVICE + suffix


def tracer_provider(service: str):
    """A TracerProvider of its own (batching, OTLP/HTTP JSON, the sampler from OTEL_TRACES_SAMPLER) when the
    environment asks for traces, else None. `shutdown()` it at exit: it exports what is still batched."""
    if not tracing_configured():
        return None
    try:
        from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as error:
        log.warning("OTLP endpoint set but OpenTelemetry is not installed (%s): no traces; install mxbai-triton[api]", error)
        return None
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol and protocol != "http/json":
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s: traces go out as http/json all the same (Triton's exporter "
                    "speaks only that; every OTLP/HTTP collector takes it)", protocol)
    # The explicit service name wins over OTEL_RESOURCE_ATTRIBUTES; the other attributes stay.
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url())))
    return provider
