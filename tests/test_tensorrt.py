"""TensorRT engines: a clear refusal where TensorRT is missing; a real build, its memory and parity where it exists."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from mxbai_triton.export.tensorrt import parse_profiles

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def test_profiles_parse_from_min_opt_max_triples():
    assert parse_profiles("1:256:256,257:512:1024") == ((1, 256, 256), (257, 512, 1024))


def test_profiles_with_opt_outside_range_are_rejected():
    with pytest.raises(ValueError, match="needs 1 <= MIN <= OPT <= MAX"):
        parse_profiles("1:512:256")


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here; this pins the behaviour without it")
def test_build_engine_without_tensorrt_says_how_to_get_it_and_does_nothing(tmp_path):
    out = tmp_path / "engine"
    run = subprocess.run(  # TensorRT is looked for before the export is read: no export needed
        [sys.executable, "-m", "mxbai_triton", "build-engine", str(tmp_path / "export"), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 3
    assert "TensorRT is not installed" in run.stderr and "pip install tensorrt" in run.stderr
    assert not out.exists()


@pytest.mark.slow
def test_the_pre_build_estimate_reads_the_exports_config_and_refuses_fp32_attention_at_full_profiles(tiny_export):
    from mxbai_triton.core.engine import EngineProfiles
    from mxbai_triton.core.memory import Architecture, OverBudget, check_instance_budget, weight_bytes
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.export.tensorrt import estimated_memory

    spec = ModelSpec.load(tiny_export)
    estimate = estimated_memory(tiny_export, spec, "fp32", EngineProfiles().ranges(spec), 48)
    assert estimate["weight_bytes"] == weight_bytes(Architecture.from_checkpoint(tiny_export), "fp32")
    with pytest.raises(OverBudget, match=r"^memory model estimate: .* fp32 attention runs unfused .* --dtype fp16"):
        check_instance_budget(estimate["weight_bytes"], estimate["profile_bytes"], source="memory model estimate", dtype="fp32")
    # Short profiles fit: an fp32 engine for parity checks stays possible.
    small = estimated_memory(tiny_export, spec, "fp32", ((1, 64, 128),), 48)
    assert check_instance_budget(small["weight_bytes"], small["profile_bytes"], source="memory model estimate", dtype="fp32") < 1 << 30


TINY_PROFILES = ((1, 64, 128), (129, 192, 256))


@pytest.fixture(scope="module")
def tiny_fp16_engine(request, tmp_path_factory):
    """The tiny stand-in, its fp16 export and its engine (two profiles), built once where TensorRT and a GPU are."""
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (NVIDIA's TensorRT container or the `gpu` extra)")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT is installed but there is no CUDA GPU to build on")
    from mxbai_triton.export.onnx_export import export_onnx
    from mxbai_triton.export.tensorrt import build_engine

    checkpoint = request.getfixturevalue("tiny_checkpoint")  # only once the skips above have passed
    root = tmp_path_factory.mktemp("tensorrt")
    export_onnx(str(checkpoint), root / "fp16", dtype="fp16")
    plan = build_engine(root / "fp16", root / "engine", precision="fp16", profiles=TINY_PROFILES)
    return checkpoint, root / "fp16", plan


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_the_tiny_fp16_engine_builds_and_records_tensorrts_memory_for_every_profile(tiny_fp16_engine):
    import json

    from mxbai_triton.core.memory import INSTANCE_BUDGET_BYTES
    from mxbai_triton.export.tensorrt import METADATA_FILENAME

    _, _, plan = tiny_fp16_engine
    memory = json.loads((plan.parent / METADATA_FILENAME).read_text())["memory"]
    reported, estimate = memory["tensorrt"], memory["estimate"]
    assert plan.stat().st_size == reported["plan_bytes"]
    assert len(reported["profile_bytes"]) == len(estimate["profile_bytes"]) == len(TINY_PROFILES)
    assert all(b > 0 for b in reported["profile_bytes"])
    assert reported["total_bytes"] == reported["plan_bytes"] + sum(reported["profile_bytes"]) <= INSTANCE_BUDGET_BYTES


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_fp16_engine_scores_match_the_reference(tiny_fp16_engine):
    import tensorrt as trt
    import torch

    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.export.checkpoint import load_causal_lm
    from mxbai_triton.export.validate import grid_inputs, reference_scores

    checkpoint, export, plan = tiny_fp16_engine
    spec = ModelSpec.load(export)
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan.read_bytes())
    context = engine.create_execution_context()
    ids, mask = grid_inputs(4, 96, spec)
    tensors = {"input_ids": torch.from_numpy(ids).cuda(), "attention_mask": torch.from_numpy(mask).cuda()}
    scores = torch.empty((4, 1), dtype=torch.float32, device="cuda")
    for name, tensor in tensors.items():
        context.set_input_shape(name, tuple(tensor.shape))
        context.set_tensor_address(name, tensor.data_ptr())
    context.set_tensor_address("scores", scores.data_ptr())
    assert context.execute_async_v3(torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    expected = reference_scores(load_causal_lm(str(checkpoint)), ids, mask, spec)
    np.testing.assert_allclose(scores.cpu().numpy()[:, 0], expected, atol=5e-2, rtol=2e-2)
