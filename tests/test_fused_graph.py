"""The fused-attention scorer graph: causal ONNX Attention with Q, K, V only, pads that cannot reach real rows,
no tensor with two sequence axes, every op parsable by TensorRT."""

from __future__ import annotations

import numpy as np
import pytest

from mxbai_triton.core.model import ONNX_FILENAME
from tests.graph_checks import ops_tensorrt_cannot_parse, tensors_with_two_sequence_axes, trt_operator_table

# runs the ONNX exporter (~10 s a graph)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fp16_graph(tiny_checkpoint, tmp_path_factory):
    from mxbai_triton.export.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("exports") / "tiny-fp16-graph"
    export_onnx(str(tiny_checkpoint), out, dtype="fp16", validate=False)
    return out / ONNX_FILENAME


@pytest.fixture(scope="module")
def bf16_graph(tiny_checkpoint, tmp_path_factory):
    from mxbai_triton.export.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("exports") / "tiny-bf16-graph"
    export_onnx(str(tiny_checkpoint), out, dtype="bf16", validate=False)
    return out / ONNX_FILENAME


def _graph(dtype, tiny_export, fp16_graph, bf16_graph):
    return {"fp32": tiny_export / ONNX_FILENAME, "fp16": fp16_graph, "bf16": bf16_graph}[dtype]


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_every_attention_node_is_causal_with_exactly_q_k_v(dtype, tiny_export, fp16_graph, bf16_graph):
    import onnx

    model = onnx.load(str(_graph(dtype, tiny_export, fp16_graph, bf16_graph)), load_external_data=False)
    attention = [n for n in model.graph.node if n.op_type == "Attention"]
    attributes = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in attention]
    # Tiny stand-in, 2 layers: layer 0 is causal attention; the last layer's one query per row is plain ops.
    assert [a["is_causal"] for a in attributes] == [1]
    assert [(len(n.input), all(n.input)) for n in attention] == [(3, True)]  # Q, K, V: no mask, no past K/V
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 23


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_the_last_layer_attends_with_one_fp32_softmax(dtype, tiny_export, fp16_graph, bf16_graph):
    import onnx

    inferred = onnx.shape_inference.infer_shapes(onnx.load(str(_graph(dtype, tiny_export, fp16_graph, bf16_graph)),
                                                            load_external_data=False))
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    softmax = [n for n in inferred.graph.node if n.op_type == "Softmax"]
    assert [types[n.input[0]] for n in softmax] == [onnx.TensorProto.FLOAT]


def _poison_pad_embedding(graph_path, pad_token_id: int):
    """The graph with the pad token's embedding row set to NaN: every pad position is non-finite from layer 0 on."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(graph_path))
    (table,) = [t for t in model.graph.initializer if t.name.endswith("embed_tokens.weight")]
    weights = numpy_helper.to_array(table).copy()
    weights[pad_token_id] = np.nan
    table.CopyFrom(numpy_helper.from_array(weights, table.name))
    return model.SerializeToString()


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_a_non_finite_pad_position_leaves_every_real_rows_score_finite_and_unchanged(dtype, tiny_export, fp16_graph):
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.core.runtime import onnx_session
    from mxbai_triton.export.validate import grid_inputs

    graph = _graph(dtype, tiny_export, fp16_graph, None)
    spec = ModelSpec.load(tiny_export)
    ids, mask = grid_inputs(4, 64, spec)  # rows of 64, 48, 32 and 16 real tokens, then pads
    feed = {"input_ids": ids, "attention_mask": mask}
    (clean,) = onnx_session(graph).run(None, feed)
    (poisoned,) = onnx_session(_poison_pad_embedding(graph, spec.pad_token_id)).run(None, feed)
    assert np.isfinite(poisoned).all()
    np.testing.assert_array_equal(poisoned, clean)


def test_a_non_finite_pad_position_leaves_bf16_scores_finite_and_unchanged(tiny_checkpoint):
    # ONNX Runtime has no bf16 CPU kernels: the module the bf16 graph is traced from.
    import torch

    from mxbai_triton.core.model import resolve_spec
    from mxbai_triton.export.checkpoint import load_causal_lm
    from mxbai_triton.export.scorer import FoldedHeadScorer
    from mxbai_triton.export.validate import grid_inputs

    spec = resolve_spec(str(tiny_checkpoint))
    ids, mask = (torch.from_numpy(a) for a in grid_inputs(4, 64, spec))
    clean_lm, poisoned_lm = load_causal_lm(str(tiny_checkpoint)), load_causal_lm(str(tiny_checkpoint))
    with torch.no_grad():
        poisoned_lm.model.embed_tokens.weight[spec.pad_token_id] = float("nan")
        clean = FoldedHeadScorer(clean_lm, spec, "bf16").eval()(ids, mask)
        poisoned = FoldedHeadScorer(poisoned_lm, spec, "bf16").eval()(ids, mask)
    assert torch.isfinite(poisoned).all()
    assert torch.equal(poisoned, clean)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_no_tensor_of_the_graph_has_two_sequence_axes(dtype, tiny_export, fp16_graph):
    path = tiny_export / ONNX_FILENAME if dtype == "fp32" else fp16_graph
    assert tensors_with_two_sequence_axes(path) == []


def test_the_two_sequence_axes_check_finds_an_attention_matrix(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    # x [b, s, d] @ x^T [b, d, s] -> [b, s, s]: what an unfused attention materialises.
    graph = helper.make_graph(
        [helper.make_node("Cast", ["input_ids"], ["x"], to=TensorProto.FLOAT),
         helper.make_node("Unsqueeze", ["x", "axes"], ["x3"]),
         helper.make_node("Transpose", ["x3"], ["xt"], perm=[0, 2, 1]),
         helper.make_node("MatMul", ["x3", "xt"], ["scores"])],
        "unfused", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, None)],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [2])],
    )
    path = tmp_path / "unfused.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)]), str(path))
    assert tensors_with_two_sequence_axes(path) == ["scores [3, 37, 37]"]


def test_every_op_and_type_of_the_fp16_graph_is_on_tensorrts_operator_list(fp16_graph):
    assert ops_tensorrt_cannot_parse(fp16_graph) == []


def test_the_operator_check_names_an_op_tensorrt_does_not_list(fp16_graph):
    table = trt_operator_table()
    del table["Attention"]
    assert ops_tensorrt_cannot_parse(fp16_graph, table) == ["Attention: not in onnx-tensorrt's operator list"]


def test_the_stored_operator_list_is_the_targeted_tensorrt_release():
    from tests.graph_checks import TRT_OPERATORS_FILE

    assert "TensorRT 11.1 supports operators" in TRT_OPERATORS_FILE.read_text(encoding="utf-8")
    table = trt_operator_table()
    assert table["Attention"].supported and table["RMSNormalization"].supported and not table["AffineGrid"].supported


def test_right_padded_scores_do_not_depend_on_how_much_padding_follows(tiny_export):
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.core.runtime import onnx_session
    from mxbai_triton.export.validate import grid_inputs

    spec = ModelSpec.load(tiny_export)
    assert spec.padding_side == "right"
    session = onnx_session(tiny_export / ONNX_FILENAME)
    ids, mask = grid_inputs(1, 40, spec)
    longer_ids = np.concatenate([ids, np.full((1, 200), spec.pad_token_id)], axis=1)
    longer_mask = np.concatenate([mask, np.zeros((1, 200), dtype=np.int64)], axis=1)
    alone = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    padded = session.run(None, {"input_ids": longer_ids, "attention_mask": longer_mask})[0]
    np.testing.assert_allclose(alone, padded, atol=1e-5, rtol=0)
