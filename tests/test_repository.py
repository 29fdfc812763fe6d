"""Generated model repositories: committed examples are current, targets get the right configs and files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2

from mxbai_triton.core.engine import EngineProfiles
from mxbai_triton.core.memory import INSTANCE_BUDGET_BYTES
from mxbai_triton.core.model import BASE_V2
from mxbai_triton.core.serving import SERVING_FILENAME, ServingLimits
from mxbai_triton.model_repository.configs import ensemble_config, scorer_config, tokenizer_config
from mxbai_triton.model_repository.generate import EXAMPLES_DIR, generate_examples
from tests.conftest import run_cli
from tests.ort_cuda_provider import option_problems

LIMITS = ServingLimits.for_model(BASE_V2)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_regenerated_examples_equal_the_committed_ones(tmp_path):
    generate_examples(tmp_path)
    assert _tree(tmp_path) == _tree(EXAMPLES_DIR), "run `mxbai-triton repo --examples`"


def test_trt_scorer_serves_every_optimization_profile():
    config = scorer_config(BASE_V2, LIMITS, "m", "trt")
    assert config.platform == "tensorrt_plan"
    assert list(config.instance_group[0].profile) == [str(i) for i in range(len(EngineProfiles().ranges(BASE_V2)))]
    assert [i.data_type for i in config.input] == [model_config_pb2.TYPE_INT64] * 2


def test_scorer_batches_dynamically_with_the_spec_limits():
    config = scorer_config(BASE_V2.with_overrides(dtype="fp16"), LIMITS, "m", "onnx")
    assert config.max_batch_size == LIMITS.max_batch_size == 48
    assert list(config.dynamic_batching.preferred_batch_size) == [24, 48]
    assert config.dynamic_batching.max_queue_delay_microseconds == LIMITS.queue_delay_us


def test_ensemble_publishes_document_limit_and_estimated_max():
    params = ensemble_config(BASE_V2, LIMITS, "m").parameters
    assert (params["max_documents_per_request"].string_value, params["estimated_max"].string_value) == ("1000", "9.0")


def test_the_tokenizer_step_dispatches_to_the_scorer_and_returns_scores_token_counts_and_timings():
    ensemble, tokenizer = ensemble_config(BASE_V2, LIMITS, "m"), tokenizer_config(BASE_V2, LIMITS, "m")
    assert [step.model_name for step in ensemble.ensemble_scheduling.step] == ["m_tokenizer"]
    assert tokenizer.parameters["scorer_model"].string_value == "m_scorer"
    # The public contract's two outputs first, unchanged; `timings` is additive (docs/observability.md).
    outputs = [("scores", [-1, 1], "TYPE_FP32"), ("token_counts", [-1, 1], "TYPE_INT32"), ("timings", [4], "TYPE_INT64")]
    for config in (ensemble, tokenizer):
        assert [(o.name, list(o.dims), model_config_pb2.DataType.Name(o.data_type)) for o in config.output] == outputs
    assert dict(ensemble.ensemble_scheduling.step[0].output_map) == {name: name for name, _, _ in outputs}


def test_only_the_python_scorer_reports_its_execution():
    outputs = {target: [o.name for o in scorer_config(BASE_V2.with_overrides(dtype="fp16"), LIMITS, "m", target).output]
               for target in ("portable", "onnx", "trt")}
    assert outputs == {"portable": ["scores", "execution_ns"], "onnx": ["scores"], "trt": ["scores"]}


def test_the_tokenizer_queue_orders_by_priority_drops_requests_past_their_timeout_and_bounds_each_level():
    batching = tokenizer_config(BASE_V2, LIMITS, "m").dynamic_batching
    assert (batching.priority_levels, batching.default_priority_level) == (2, 1)
    levels = batching.priority_queue_policy
    assert (levels[1].max_queue_size, levels[2].max_queue_size) == (LIMITS.interactive_queue_size, LIMITS.bulk_queue_size)
    for policy in (batching.default_queue_policy, levels[1], levels[2]):
        assert policy.allow_timeout_override and policy.default_timeout_microseconds == LIMITS.queue_timeout_us
        assert policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT


def test_a_repository_written_with_the_retired_max_queue_size_still_loads(tmp_path):
    LIMITS.save(tmp_path)
    raw = json.loads((tmp_path / SERVING_FILENAME).read_text())
    (tmp_path / SERVING_FILENAME).write_text(json.dumps({**raw, "max_queue_size": 512}))
    assert ServingLimits.load(tmp_path) == LIMITS


@pytest.mark.parametrize("target", ["portable", "onnx", "trt", "openvino"])
def test_the_scorer_queue_has_no_policy_so_that_triton_s_batcher_prefetches_in_arrival_order(target):
    batching = scorer_config(BASE_V2.with_overrides(dtype="fp16"), LIMITS, "m", target).dynamic_batching
    assert not batching.HasField("default_queue_policy") and batching.priority_levels == 0


def test_the_portable_scorer_merges_only_sub_batches_of_one_length():
    config = scorer_config(BASE_V2, LIMITS, "m", "portable")
    assert [t.allow_ragged_batch for t in config.input] == [False, False]


def test_the_ensemble_names_its_dispatch_step_for_clients_that_cancel():
    assert ensemble_config(BASE_V2, LIMITS, "m").parameters["dispatch_model"].string_value == "m_tokenizer"


@pytest.mark.parametrize("model", ["base-v2", "large-v2"])
def test_every_cuda_provider_option_of_the_onnx_examples_is_a_name_and_value_onnx_runtime_parses(model):
    from google.protobuf import text_format

    text = (EXAMPLES_DIR / model / "onnx" / f"mxbai-rerank-{model}_scorer" / "config.pbtxt").read_text()
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    (cuda,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert cuda.name == "cuda"
    assert dict(cuda.parameters) == {"arena_extend_strategy": "kSameAsRequested", "gpu_mem_limit": str(INSTANCE_BUDGET_BYTES)}
    assert option_problems(dict(cuda.parameters)) == []


def test_the_cuda_option_check_rejects_an_enum_given_by_number_and_an_unknown_name():
    assert option_problems({"arena_extend_strategy": "1", "gpu_mem_limit": "36.5GiB", "use_tf32": "true", "arena": "0"}) == [
        "arena_extend_strategy='1': the CUDA provider takes one of kNextPowerOfTwo, kSameAsRequested (names, not numbers)",
        "gpu_mem_limit='36.5GiB': the CUDA provider takes a decimal unsigned integer",
        "use_tf32='true': the CUDA provider takes 0 or 1",
        "arena: not an option of ONNX Runtime's CUDA provider",
    ]


def test_the_onnx_gpu_target_refuses_an_fp32_export_and_says_what_to_export_instead():
    with pytest.raises(ValueError, match=r"needs an fp16 or bf16 export, and this one is fp32: .* unfused .*--dtype fp16"):
        scorer_config(BASE_V2, LIMITS, "m", "onnx")


def test_the_onnx_target_on_cpu_serves_an_fp32_export():
    config = scorer_config(BASE_V2, LIMITS, "m", "onnx", instance_kind="cpu")
    assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator


def test_configs_only_gpu_repositories_are_written_for_the_fp16_graph(tmp_path):
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.model_repository.generate import generate_repository

    root = generate_repository(tmp_path, BASE_V2, target="onnx", name="m")
    assert ModelSpec.load(root / "m_tokenizer" / "1").dtype == "fp16"


def test_unknown_target_is_rejected():
    with pytest.raises(ValueError, match="unknown target 'tflite'"):
        scorer_config(BASE_V2, LIMITS, "m", "tflite")


@pytest.mark.slow
def test_repo_command_places_weights_and_tokenizer_for_the_onnx_target(tiny_export, tmp_path):
    run = run_cli("repo", str(tiny_export), "--out", str(tmp_path), "--target", "onnx", "--instance-kind", "cpu", "--name", "rr")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "rr_scorer" / "1" / "model.onnx").is_file()
    assert (tmp_path / "rr_tokenizer" / "1" / "tokenizer.json").is_file()
    assert 'platform: "onnxruntime_onnx"' in (tmp_path / "rr_scorer" / "config.pbtxt").read_text()
    assert (tmp_path / "rr" / "1").is_dir()


@pytest.mark.slow
def test_repo_command_refuses_an_fp32_export_for_the_onnx_gpu_target_and_writes_nothing(tiny_export, tmp_path):
    run = run_cli("repo", str(tiny_export), "--out", str(tmp_path), "--target", "onnx", "--name", "rr")
    assert run.returncode == 2
    assert "needs an fp16 or bf16 export" in run.stderr and "--dtype fp16" in run.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_repo_command_for_trt_without_an_engine_says_how_to_build_one(tiny_export, tmp_path):
    run = run_cli("repo", str(tiny_export), "--out", str(tmp_path), "--target", "trt", "--engine", str(tmp_path))
    assert run.returncode == 2  # a usage error: the engine directory given has no engine
    assert "no model.plan" in run.stderr and "build-engine" in run.stderr
