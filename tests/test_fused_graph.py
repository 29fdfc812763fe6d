"""The fused-attention scorer graph: ONNX Attention, no tensor with two sequence axes, every op parsable by TensorRT."""

from __future__ import annotations

import numpy as np
import pytest

from mxbai_triton.export.graph_checks import ops_tensorrt_cannot_parse, tensors_with_two_sequence_axes, trt_operator_table
from mxbai_triton.export.spec import ONNX_FILENAME

# runs the ONNX exporter (~10 s a graph)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fp16_graph(tiny_checkpoint, tmp_path_factory):
    from mxbai_triton.export.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("exports") / "tiny-fp16-graph"
    export_onnx(str(tiny_checkpoint), out, dtype="fp16", validate=False)
    return out / ONNX_FILENAME


def test_attention_is_the_onnx_attention_op_causal_without_a_mask_but_for_the_last_token_query(tiny_export):
    import onnx

    model = onnx.load(str(tiny_export / ONNX_FILENAME), load_external_data=False)
    attention = [n for n in model.graph.node if n.op_type == "Attention"]
    causal = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}["is_causal"] for n in attention]
    # Tiny stand-in, 2 layers: layer 0 is causal over every position with Q, K, V only; the last layer
    # has one query per row (its last real token) and an additive [b, 1, 1, s] mask of visible keys.
    assert causal == [1, 0]
    assert [len([i for i in n.input if i]) for n in attention] == [3, 4]
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 23


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
    from mxbai_triton.export.graph_checks import TRT_OPERATORS_FILE

    assert "TensorRT 11.1 supports operators" in TRT_OPERATORS_FILE.read_text(encoding="utf-8")
    table = trt_operator_table()
    assert table["Attention"].supported and table["RMSNormalization"].supported and not table["AffineGrid"].supported


def test_right_padded_scores_do_not_depend_on_how_much_padding_follows(tiny_export):
    from mxbai_triton.export.runtime import onnx_session
    from mxbai_triton.export.spec import ModelSpec
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
