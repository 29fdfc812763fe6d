"""CPU precision: the OpenVINO scorer at fp32 equals ONNX Runtime's, bf16 is served only where the CPU has it, and
the precision in use shows in the configs, the metrics and serve's ready line; the openvino target's configs."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from mxbai_triton.client import RerankClient
from mxbai_triton.core.runtime import NATIVE_BF16_FLAGS, CpuScoring, cpu_flags, missing_bf16
from mxbai_triton.model_repository.generate import EXAMPLES_DIR, cpu_scoring, default_precision
from mxbai_triton.model_repository.openvino_options import openvino_properties, parameter_problems
from tests.cases import LONG_CASES, PARITY_CASES
from tests.conftest import run_cli, serve_command

# Every CPU: the AVX2 development machine has no native bf16, the AMX production machines do.
BF16_HERE = missing_bf16() is None
NO_BF16 = frozenset({"avx2", "fma"})
AMX = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16"})
# bf16 keeps 8 bits of mantissa: on the tiny stand-in's scores (|s| < 1) 0.05 is ~15 bf16 steps;
# docs/cpu-precision.md has the real shapes' figures.
BF16_ATOL = 0.05


def _config(path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _parameters(config) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


def _parity_cases():
    return [c for c in PARITY_CASES if c[4] is None and c[0] not in LONG_CASES]


def test_bf16_needs_one_of_the_native_bf16_flags_and_the_refusal_names_them():
    assert missing_bf16(NO_BF16) == "this CPU has no native bf16: neither avx512_bf16 nor amx_bf16 is among its flags (lscpu)"
    assert missing_bf16(frozenset({"avx512_bf16"})) is None and missing_bf16(frozenset({"amx_bf16"})) is None
    assert (missing_bf16() is None) == any(flag in cpu_flags() for flag in NATIVE_BF16_FLAGS)


def test_repo_refuses_bf16_without_native_bf16_or_writes_fp32_when_allowed():
    with pytest.raises(ValueError, match=r"^bf16 refused: this CPU has no native bf16: neither avx512_bf16 nor amx_bf16"):
        cpu_scoring("portable", "bf16", flags=NO_BF16)
    scoring, note = cpu_scoring("portable", "bf16", flags=NO_BF16, allow_fp32_fallback=True)
    assert (scoring, note) == (CpuScoring("openvino", "fp32"), "this CPU has no native bf16: neither avx512_bf16 nor "
                               "amx_bf16 is among its flags (lscpu): wrote fp32 instead of bf16 (--allow-fp32-fallback)")
    assert cpu_scoring("portable", "bf16", flags=AMX) == (CpuScoring("openvino", "bf16"), None)
    assert cpu_scoring("portable", "fp32", flags=AMX) == (CpuScoring("onnxruntime", "fp32"), None)


def test_the_openvino_target_takes_the_cpus_native_precision_and_refuses_fp32_it_cannot_keep():
    assert (default_precision("openvino", AMX), default_precision("openvino", NO_BF16), default_precision("portable", AMX)) == (
        "bf16", "fp32", "fp32")
    with pytest.raises(ValueError, match="fp32 refused for the openvino target on this CPU: OpenVINO runs bf16 by default"):
        cpu_scoring("openvino", "fp32", flags=AMX)
    assert cpu_scoring("openvino", "fp32", flags=NO_BF16) == (CpuScoring("openvino", "fp32"), None)


def test_onnx_runtime_has_no_bf16_scorer():
    with pytest.raises(ValueError, match="bf16 on a CPU runs on OpenVINO"):
        CpuScoring("onnxruntime", "bf16")


@pytest.mark.parametrize("model", ["base-v2", "large-v2"])
def test_openvino_examples_carry_only_parameters_the_backend_parses_with_values_it_takes(model):
    scorer = _config(EXAMPLES_DIR / model / "openvino" / f"mxbai-rerank-{model}_scorer" / "config.pbtxt")
    assert (scorer.backend, scorer.default_model_filename, scorer.max_batch_size) == ("openvino", "model.onnx", 0)
    assert [list(i.dims) for i in scorer.input] == [[-1, -1], [-1, -1]] and list(scorer.output[0].dims) == [-1, 1]
    assert [g.kind for g in scorer.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
    params = _parameters(scorer)
    assert {k: params[k] for k in ("HINT_BF16", "NUM_STREAMS", "PERFORMANCE_HINT", "precision")} == {
        "HINT_BF16": "YES", "NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY", "precision": "bf16"}
    assert parameter_problems(params) == []
    ensemble = _config(EXAMPLES_DIR / model / "openvino" / f"mxbai-rerank-{model}" / "config.pbtxt")
    assert ensemble.parameters["scorer_precision"].string_value == "bf16"


def test_the_openvino_parameter_check_rejects_what_the_backend_would_and_what_we_never_set():
    assert parameter_problems({"HINT_BF16": "true", "NUM_STREAMS": "many", "PERFORMANCE_HINT": "fast",
                               "INFERENCE_NUM_THREADS": "-2", "ENABLE_BATCH_PADDING": "YES", "INFERENCE_PRECISION_HINT": "f32"}) == [
        "HINT_BF16='true': the openvino backend takes YES",
        "NUM_STREAMS='many': the openvino backend takes AUTO, NUMA or a number",
        "PERFORMANCE_HINT='fast': the openvino backend takes LATENCY, THROUGHPUT or CUMULATIVE_THROUGHPUT",
        "INFERENCE_NUM_THREADS='-2': the openvino backend takes a non-negative number",
        "ENABLE_BATCH_PADDING: changes how the backend batches or reshapes; the openvino target leaves it unset",
        "INFERENCE_PRECISION_HINT: neither read by the openvino backend nor one of ours",
    ]


def test_the_repository_check_names_an_openvino_parameter_the_backend_would_reject(tmp_path):
    from mxbai_triton.model_repository.preflight import check_repository

    repository = tmp_path / "repo"
    shutil.copytree(EXAMPLES_DIR / "base-v2" / "openvino", repository)
    (repository / "mxbai-rerank-base-v2_scorer" / "1").mkdir(exist_ok=True)  # a clone has no empty folders: as a user fills it
    config_path = repository / "mxbai-rerank-base-v2_scorer" / "config.pbtxt"
    config_path.write_text(config_path.read_text().replace('string_value: "LATENCY"', 'string_value: "fast"'))
    problems = check_repository(repository)
    assert f"{repository / 'mxbai-rerank-base-v2_scorer' / '1' / 'model.onnx'}: missing" in problems  # configs only
    assert [p for p in problems if p.startswith(str(config_path))] == [
        f"{config_path}: PERFORMANCE_HINT='fast': the openvino backend takes LATENCY, THROUGHPUT or CUMULATIVE_THROUGHPUT"]


@pytest.mark.slow
def test_openvino_compiles_the_export_with_the_backends_properties_and_its_inputs_match_the_config(tiny_export, tmp_path):
    """What Triton's openvino backend does at load (read the ONNX file, set the properties, compare dims), here in OpenVINO."""
    import openvino as ov

    run = run_cli("repo", str(tiny_export), "--out", str(tmp_path), "--target", "openvino", "--name", "rr",
                  "--threads", "2", *([] if BF16_HERE else ["--precision", "fp32"]))
    assert run.returncode == 0, run.stderr
    scorer = _config(tmp_path / "rr_scorer" / "config.pbtxt")
    assert _parameters(scorer)["INFERENCE_NUM_THREADS"] == "2" and parameter_problems(_parameters(scorer)) == []
    assert ("HINT_BF16" in scorer.parameters) == BF16_HERE
    core = ov.Core()
    model = core.read_model(str(tmp_path / "rr_scorer" / "1" / scorer.default_model_filename))
    compiled = core.compile_model(model, "CPU", openvino_properties(_parameters(scorer)))
    by_name = {i.get_any_name(): i.get_partial_shape() for i in compiled.inputs}
    for tensor in scorer.input:  # every dimension dynamic, as the config's -1 (openvino_utils.cc doesMatch)
        assert by_name[tensor.name].rank.get_length() == len(tensor.dims) and by_name[tensor.name].is_dynamic
    assert compiled.outputs[0].get_any_name() == scorer.output[0].name
    assert compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == ("bf16" if BF16_HERE else "f32")


@pytest.mark.slow
def test_the_scorer_refuses_bf16_at_load_on_a_cpu_without_it_and_checks_what_openvino_compiled(tiny_export):
    from mxbai_triton.core.model import ONNX_FILENAME
    from mxbai_triton.core.runtime import openvino_model

    with pytest.raises(ValueError, match=r"^bf16 refused: this CPU has no native bf16: neither avx512_bf16 nor amx_bf16"):
        openvino_model(tiny_export / ONNX_FILENAME, precision="bf16", flags=NO_BF16)
    # Flags that claim AMX: OpenVINO itself decides, and keeps f32 on a CPU without bf16 (the scorer then refuses).
    if BF16_HERE:
        assert openvino_model(tiny_export / ONNX_FILENAME, precision="bf16", flags=AMX).get_property(
            "INFERENCE_PRECISION_HINT").to_string() == "bf16"
    else:
        with pytest.raises(ValueError, match="OpenVINO compiled .* at f32, not bf16 as asked"):
            openvino_model(tiny_export / ONNX_FILENAME, precision="bf16", flags=AMX)


@pytest.mark.triton
def test_openvino_scorer_at_fp32_serves_the_parity_set_within_1e_4_of_onnx_runtime_and_says_so(tiny_export, served, tmp_path):
    run = run_cli("repo", str(tiny_export), "--out", str(tmp_path / "repo"), "--name", "ov", "--runtime", "openvino")
    assert run.returncode == 0, run.stderr
    assert "(scorer: fp32 on OpenVINO)" in run.stdout
    assert _parameters(_config(tmp_path / "repo" / "ov_scorer" / "config.pbtxt"))["runtime"] == "openvino"
    command, ports = serve_command(tmp_path / "repo")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready = next(line for line in process.stdout if "models ready" in line)
        assert ", scorer ov_scorer: fp32 on OpenVINO (Ctrl-C stops)" in ready
        with RerankClient(f"127.0.0.1:{ports['grpc']}", model="ov") as ours, \
                RerankClient(served.grpc_url, model="reranker") as onnx_runtime:
            for _, query, documents, instruction, _ in _parity_cases():
                np.testing.assert_allclose(ours.scores(query, documents, instruction=instruction),
                                           onnx_runtime.scores(query, documents, instruction=instruction), atol=1e-4, rtol=0)
    finally:
        process.terminate()
        assert process.wait(timeout=60) == 0


@pytest.mark.triton
def test_bf16_is_served_where_the_cpu_has_it_and_refused_in_one_line_where_not(tiny_export, served, tmp_path):
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.model_repository.generate import generate_repository
    from mxbai_triton.model_repository.metrics_port import scorer_precisions
    from mxbai_triton.model_repository.server import ServerError, TritonServer
    from mxbai_triton.perf.agreement import agreement

    refused = run_cli("repo", str(tiny_export), "--out", str(tmp_path / "asked"), "--precision", "bf16", "--name", "rr")
    fallback = run_cli("repo", str(tiny_export), "--out", str(tmp_path / "fallback"), "--precision", "bf16", "--name", "rr",
                       "--allow-fp32-fallback")
    assert fallback.returncode == 0, fallback.stderr
    written = _parameters(_config(tmp_path / "fallback" / "rr_scorer" / "config.pbtxt"))["precision"]
    if not BF16_HERE:  # this CPU lacks avx512_bf16 and amx_bf16: refused at repo time and at load time, fp32 only when asked
        assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
            "mxbai-triton repo: error: bf16 refused: this CPU has no native bf16: neither avx512_bf16 nor amx_bf16 is among its "
            "flags (lscpu); serve fp32 (--precision fp32), or write fp32 with --allow-fp32-fallback"]
        assert not (tmp_path / "asked").exists()
        assert written == "fp32" and "wrote fp32 instead of bf16" in fallback.stdout
        bf16_repo = generate_repository(tmp_path / "moved", ModelSpec.load(tiny_export), target="portable", name="rr",
                                        export_dir=tiny_export, scoring=CpuScoring("openvino", "bf16"))
        with pytest.raises(ServerError, match=r"model 'rr_scorer' failed to load: .*bf16 refused: this CPU has no native bf16"):
            TritonServer.on_free_ports(bf16_repo, stop_grace=0).start(timeout=120)
        serve_repo, expected = tmp_path / "fallback", "fp32 on OpenVINO"
    else:
        assert refused.returncode == 0, refused.stderr
        assert written == "bf16" and "note:" not in fallback.stdout
        serve_repo, expected = tmp_path / "asked", "bf16 on OpenVINO"
    assert _config(serve_repo / "rr" / "config.pbtxt").parameters["scorer_precision"].string_value == expected.split()[0]
    with TritonServer.on_free_ports(serve_repo, stop_grace=0) as server, \
            RerankClient(server.grpc_url, model="rr") as ours, RerankClient(served.grpc_url, model="reranker") as fp32:
        assert scorer_precisions(server.metrics_url) == {"rr_scorer": expected}
        for _, query, documents, instruction, _ in _parity_cases():
            reduced, exact = (c.scores(query, documents, instruction=instruction) for c in (ours, fp32))
            result = agreement(exact, reduced)
            assert result.finite and result.max_abs <= (BF16_ATOL if BF16_HERE else 1e-4), (query, result)


def test_agreement_reports_the_difference_against_the_requests_spread_and_how_the_order_moved():
    from mxbai_triton.perf.agreement import agreement

    exact = np.arange(12, dtype=np.float32)  # spread 11, document 11 first
    approx = exact.copy()
    approx[[10, 11]] = approx[[11, 10]]  # the top two swap places; 0 and 1 (outside the top 10) too
    approx[[0, 1]] = approx[[1, 0]]
    result = agreement(exact, approx)
    assert (result.documents, result.finite, result.max_abs, result.spread) == (12, True, 1.0, 11.0)
    assert result.relative == pytest.approx(1 / 11) and result.spearman == pytest.approx(1 - 6 * 4 / (12 * 143))
    assert result.top_k_overlap == 1.0  # the same ten documents, in another order
    assert agreement(exact, np.where(exact == 3, np.nan, exact)).finite is False


def test_the_cpu_precision_table_states_each_rate_against_its_own_precisions_peak_and_refusals_as_such():
    from mxbai_triton.perf.cpu_precision import table

    common = {"size": "base", "docs": 4, "gflop": 100.0}
    records = [
        {"config": "served-ort-fp32", **common, "seconds": 1.0, "peak_gflops": 200.0, "scores": [1.0, 2.0, 3.0, 4.0]},
        {"config": "served-ov-bf16", **common, "seconds": 0.25, "peak_gflops": 1000.0, "scores": [1.0, 2.0, 4.0, 3.0],
         "memory_gib": {"VmRSS": 3.0, "RssAnon": 1.0, "RssFile": 2.0}},
        {"config": "served-ov-bf16", **common, "peak_gflops": 20.0, "refused": "bf16 refused: this CPU has no native bf16"},
    ]
    rows = table(records).splitlines()[2:]
    assert rows[0] == "| base | served-ort-fp32 | 4 | 1.0 | 4.000 | 100.0 | 200.0 | 50% |  |  |"
    assert rows[1] == "| base | served-ov-bf16 | 4 | 0.2 | 16.000 | 400.0 | 1000.0 | 40% | 3.0 (1.0 + 2.0) | 1, 0.8000, 1.00 |"
    assert rows[2] == "| base | served-ov-bf16 | 4 | — | refused | | 20.0 | | | bf16 refused: this CPU has no native bf16 |"
