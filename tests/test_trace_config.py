"""serve's translation of the standard OTEL_* variables into Triton's --trace-config (Triton reads only some of them),
and its JSON rewrite of Triton's log lines."""

from __future__ import annotations

import pytest

from mxbai_triton.model_repository.trace_config import trace_args, trace_settings

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}


def test_no_endpoint_or_a_disabled_sdk_means_no_tracing_flags():
    assert trace_settings({}) == []
    assert trace_settings({**ENDPOINT, "OTEL_SDK_DISABLED": "true"}) == []
    assert trace_settings({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}) == []


def test_an_endpoint_turns_on_opentelemetry_at_timestamps_with_the_traces_url_and_a_service_name():
    assert trace_settings({**ENDPOINT, "OTEL_SERVICE_NAME": "rerank"}) == [
        "mode=opentelemetry", "level=TIMESTAMPS", "rate=1", "opentelemetry,url=http://collector:4318/v1/traces",
        "opentelemetry,resource=service.name=rerank-triton"]
    specific = trace_settings({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom"})
    assert "opentelemetry,url=http://c:4318/custom" in specific
    assert "opentelemetry,resource=service.name=mxbai-triton-triton" in specific


@pytest.mark.parametrize("sampler, argument, rate", [
    ("parentbased_traceidratio", "0.01", 100), ("traceidratio", "0.25", 4), ("always_on", "", 1),
    ("parentbased_always_off", "", 0), ("traceidratio", "0", 0)])
def test_the_sampler_becomes_tritons_rate_of_requests_without_a_traceparent(sampler, argument, rate):
    env = {**ENDPOINT, "OTEL_TRACES_SAMPLER": sampler, "OTEL_TRACES_SAMPLER_ARG": argument}
    assert f"rate={rate}" in trace_settings(env)


def test_behind_the_gateway_triton_traces_only_what_the_gateway_sampled_and_given_settings_win():
    settings = trace_settings(ENDPOINT, behind_gateway=True, given=["rate=10", "opentelemetry,bsp_schedule_delay=100",
                                                                   "opentelemetry,resource=service.name=mine"])
    assert "rate=10" in settings and "rate=0" not in settings
    assert "opentelemetry,resource=service.name=mine" in settings and "opentelemetry,bsp_schedule_delay=100" in settings
    assert "rate=0" in trace_settings(ENDPOINT, behind_gateway=True)
    assert trace_args(["rate=0"]) == ["--trace-config", "rate=0"]
    with pytest.raises(ValueError, match="SETTING=VALUE"):
        trace_settings({}, given=["opentelemetry"])


def test_serve_rewrites_tritons_log_lines_as_json_objects():
    import json

    from mxbai_triton.noise import triton_json_line

    line = json.loads(triton_json_line("W1206 12:00:01.123456 4242 model_lifecycle.cc:473] \"loading: rr:1\"\n"))
    assert line == {"level": "warning", "logger": "tritonserver", "triton_time": "12:00:01.123456",
                    "source": "model_lifecycle.cc:473", "message": "\"loading: rr:1\""}
    assert json.loads(triton_json_line("Traceback (most recent call last):"))["message"] == "Traceback (most recent call last):"
