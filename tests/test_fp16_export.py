"""Low-precision graphs: sensitive ops stay fp32, fp16 scores stay finite and close to fp32 under padding; bf16 exports."""

from __future__ import annotations

import numpy as np
import pytest

from mxbai_triton.core.model import ONNX_FILENAME

# runs the ONNX exporter (~10 s a graph)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fp16_export(tiny_checkpoint, tmp_path_factory):
    from mxbai_triton.export.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("exports") / "tiny-fp16"
    export_onnx(str(tiny_checkpoint), out, dtype="fp16")  # validates against fp32 PyTorch on the grid
    return out


def _value_types(model):
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    types.update({t.name: t.data_type for t in inferred.graph.initializer})
    return inferred.graph, types


def test_fp16_graph_keeps_norm_reductions_and_the_last_layers_softmax_in_fp32_and_runs_fused_attention_in_fp16(fp16_export):
    import onnx

    graph, types = _value_types(onnx.load(str(fp16_export / ONNX_FILENAME)))
    float32, float16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    reductions = [n for n in graph.node if n.op_type in ("RMSNormalization", "ReduceMean", "Pow", "Sqrt", "Reciprocal")]
    assert reductions, "expected the RMSNorm reductions in the graph"
    assert all(types.get(n.input[0]) == float32 for n in reductions)
    attention = [n for n in graph.node if n.op_type == "Attention"]
    assert attention
    # The one unfused softmax is the last layer's single query per row: fp32.
    assert [types.get(n.input[0]) for n in graph.node if n.op_type == "Softmax"] == [float32]
    assert all(types.get(name) == float16 for n in attention for name in n.input[:3])  # Q, K, V
    assert any(t.data_type == float16 for t in graph.initializer), "weights should be fp16"


def test_fp16_scores_stay_finite_and_close_to_fp32_for_padded_rows(fp16_export, tiny_export):
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.core.runtime import onnx_session
    from mxbai_triton.export.validate import grid_inputs

    spec = ModelSpec.load(fp16_export)
    ids, mask = grid_inputs(8, 512, spec)  # the last rows are almost all padding
    feed = {"input_ids": ids, "attention_mask": mask}
    (fp16,) = onnx_session(fp16_export / ONNX_FILENAME).run(None, feed)
    (fp32,) = onnx_session(tiny_export / ONNX_FILENAME).run(None, feed)
    assert np.isfinite(fp16).all()
    np.testing.assert_allclose(fp16, fp32, atol=5e-2, rtol=2e-2)


def test_bf16_export_validates_through_the_traced_module(tiny_checkpoint, tmp_path, caplog):
    import onnx

    from mxbai_triton.export.onnx_export import export_onnx

    export_onnx(str(tiny_checkpoint), tmp_path / "bf16", dtype="bf16")
    assert "no bf16 CPU kernels" in caplog.text
    model = onnx.load(str(tmp_path / "bf16" / ONNX_FILENAME))
    assert any(t.data_type == onnx.TensorProto.BFLOAT16 for t in model.graph.initializer)


def _scorers(tiny_checkpoint, scale: float = 1.0):
    import copy

    import torch

    from mxbai_triton.core.model import resolve_spec
    from mxbai_triton.export.checkpoint import load_causal_lm
    from mxbai_triton.export.fp16_emulation import emulate_reduced

    lm = load_causal_lm(str(tiny_checkpoint))
    with torch.no_grad():  # scale > 1 pushes the first MLP's products past fp16's 65504
        lm.model.layers[0].mlp.up_proj.weight.mul_(scale)
    spec = resolve_spec(str(tiny_checkpoint))
    from mxbai_triton.export.scorer import FoldedHeadScorer

    return (
        FoldedHeadScorer(lm, spec, "fp32").eval(),
        FoldedHeadScorer(copy.deepcopy(lm), spec, "fp16").eval(),
        emulate_reduced(FoldedHeadScorer(copy.deepcopy(lm), spec, "fp32").eval()),
        spec,
    )


def _run(scorer, ids, mask):
    import torch

    with torch.inference_mode():
        return scorer(torch.from_numpy(ids), torch.from_numpy(mask))[:, 0].float().numpy()


def test_emulated_fp16_is_as_close_to_fp32_as_real_fp16(tiny_checkpoint):
    from mxbai_triton.export.validate import grid_inputs

    fp32, fp16, emulated, spec = _scorers(tiny_checkpoint)
    ids, mask = grid_inputs(4, 256, spec)
    exact = _run(fp32, ids, mask)
    real_error = np.max(np.abs(_run(fp16, ids, mask) - exact))
    emulated_error = np.max(np.abs(_run(emulated, ids, mask) - exact))
    assert 0 < emulated_error and 0 < real_error
    assert emulated_error / 4 <= real_error <= emulated_error * 4  # same order: fp16 rounding, fp32 sums


def test_emulated_fp16_overflows_where_real_fp16_overflows(tiny_checkpoint):
    from mxbai_triton.export.validate import grid_inputs

    fp32, fp16, emulated, spec = _scorers(tiny_checkpoint, scale=3e5)
    ids, mask = grid_inputs(2, 64, spec)
    assert np.isfinite(_run(fp32, ids, mask)).all()
    assert not np.isfinite(_run(fp16, ids, mask)).all()
    assert not np.isfinite(_run(emulated, ids, mask)).all()
