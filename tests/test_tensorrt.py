"""TensorRT engines: a clear refusal where TensorRT is missing; a real build and parity where it exists."""

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


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_fp16_engine_scores_match_onnx_runtime(tiny_checkpoint, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (NVIDIA container or tensorrt-cu12 wheel)")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from mxbai_triton.export.checkpoint import load_causal_lm
    from mxbai_triton.export.onnx_export import export_onnx
    from mxbai_triton.export.spec import ModelSpec
    from mxbai_triton.export.tensorrt import build_engine
    from mxbai_triton.export.validate import grid_inputs, reference_scores

    export = tmp_path / "fp16"
    export_onnx(str(tiny_checkpoint), export, dtype="fp16")
    plan = build_engine(export, tmp_path / "engine", precision="fp16", profiles=((1, 64, 128),))
    import tensorrt as trt

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
    expected = reference_scores(load_causal_lm(str(tiny_checkpoint)), ids, mask, spec)
    np.testing.assert_allclose(scores.cpu().numpy()[:, 0], expected, atol=5e-2, rtol=2e-2)
