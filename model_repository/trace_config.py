"""Triton's OpenTelemetry tracing flags from the standard OTEL_* environment, which Triton reads only in part.

Triton 2.51 (and 26.x) turns tracing on only from its command line: `--trace-config mode=opentelemetry` and
`level=TIMESTAMPS` (the level defaults to OFF), `opentelemetry,url=` (the full /v1/traces URL),
`opentelemetry,resource=service.name=` (server src/command_line_parser.cc v2.51.0 2153-2241, src/tracer.cc 499-536).
It reads OTEL_BSP_* itself, and its exporter (opentelemetry-cpp 1.13) OTEL_EXPORTER_OTLP_* headers and timeout,
but not OTEL_SERVICE_NAME nor the sampler: those are translated here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from mxbai_triton.core.tracing import TRITON_SUFFIX, service_name, traces_url, tracing_configured

_RESOURCE = "opentelemetry,resource="


def sample_rate(env: Mapping[str, str] = os.environ) -> int:
    """Triton's `rate` (every n-th request without a traceparent; 0: none) for OTEL_TRACES_SAMPLER(_ARG).

    A request carrying a valid traceparent is traced whatever the rate (tracer.cc GetTraceStartOptions
    294-320, SampleTrace 1124-1170), and whatever its sampled flag (server issue #8474).
    """
    sampler = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    if sampler in ("always_off", "parentbased_always_off"):
        return 0
    if sampler in ("traceidratio", "parentbased_traceidratio"):
        try:
            ratio = float(env.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
        except ValueError:
            ratio = 1.0
        return 0 if ratio <= 0 else max(1, round(1 / min(ratio, 1.0)))
    return 1


def _key(setting: str) -> str:
    """What a later setting of the same name replaces: "rate", "opentelemetry,url", "opentelemetry,resource=service.name"."""
    if setting.startswith(_RESOURCE):
        return setting.split("=", 2)[1] if setting.count("=") >= 2 else setting
    return setting.split("=", 1)[0]


def trace_settings(env: Mapping[str, str] = os.environ, *, behind_gateway: bool = False,
                   given: Sequence[str] = ()) -> list[str]:
    """Triton's --trace-config settings: none unless the environment asks for traces (core/tracing.py) or
    `given` names some; `given` (serve --trace-config) replaces ours of the same name.

    `behind_gateway`: rate 0, so that Triton traces exactly the requests the gateway samples (it passes a
    traceparent on for those only); a direct client's request is traced when it carries a traceparent.
    """
    settings: dict[str, str] = {}
    if tracing_configured(env):
        rate = 0 if behind_gateway else sample_rate(env)
        for setting in ("mode=opentelemetry", "level=TIMESTAMPS", f"rate={rate}", f"opentelemetry,url={traces_url(env)}",
                        f"{_RESOURCE}service.name={service_name(TRITON_SUFFIX, env)}"):
            settings[_key(setting)] = setting
    for setting in given:
        if "=" not in setting:
            raise ValueError(f"--trace-config takes SETTING=VALUE or MODE,SETTING=VALUE (Triton's), got {setting!r}")
        settings[_key(setting)] = setting
    return list(settings.values())


def trace_args(settings: Sequence[str]) -> list[str]:
    """The settings as tritonserver arguments."""
    return [arg for setting in settings for arg in ("--trace-config", setting)]
