"""Static checks of an exported scorer graph (for the tests): no tensor with two sequence axes, every op on TensorRT's list."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# onnx-tensorrt's operator support table for the TensorRT of the Triton container we target,
# stored verbatim with its source in export/
TRT_OPERATORS_FILE = Path(__file__).resolve().parents[1] / "export" / "trt_operators.md"


def _load(onnx_path: str | Path):
    import onnx

    return onnx.load(str(onnx_path), load_external_data=False)


def tensors_with_two_sequence_axes(onnx_path: str | Path, *, batch: int = 3, seq: int = 37) -> list[str]:
    """Tensors of the graph that have `seq` on two axes (e.g. a [b, h, s, s] attention matrix or mask).

    The inputs are fixed to [batch, seq] (sizes no other dimension of the model takes) and ONNX shape
    inference propagates them; the few tensors whose shape it cannot infer (RoPE tables built by
    Range) are measured by running the graph on such inputs with ONNX Runtime.
    """
    import onnx

    model = _load(onnx_path)
    for value in model.graph.input:
        for dim, size in zip(value.type.tensor_type.shape.dim, (batch, seq)):
            dim.ClearField("dim_param")
            dim.dim_value = size
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    shapes, unknown = {}, []
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        if value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
        else:
            unknown.append(value.name)
    shapes.update(_observed_shapes(onnx_path, unknown, batch, seq))
    return sorted(f"{name} {sizes}" for name, sizes in shapes.items() if sizes.count(seq) >= 2)


def _observed_shapes(onnx_path: str | Path, names: list[str], batch: int, seq: int) -> dict[str, list[int]]:
    if not names:
        return {}
    import numpy as np
    import onnx

    from mxbai_triton.core.runtime import onnx_session

    model = onnx.load(str(onnx_path))  # with external data: the run needs the weights
    graph_inputs = [v.name for v in model.graph.input]
    for name in names:
        model.graph.output.append(onnx.ValueInfoProto(name=name))
    session = onnx_session(model.SerializeToString(), optimize=False)
    feed = {name: np.ones((batch, seq), dtype=np.int64) for name in graph_inputs}
    outputs = session.run(names, feed)
    return {name: list(array.shape) for name, array in zip(names, outputs)}


@dataclass(frozen=True)
class OperatorSupport:
    """One row of onnx-tensorrt's operators.md."""

    op: str
    supported: bool
    dtypes: str
    restrictions: str


def trt_operator_table(path: str | Path = TRT_OPERATORS_FILE) -> dict[str, OperatorSupport]:
    """The support table, by op name: rows `| Op | Supported | Supported Types | Restrictions |`."""
    table = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not re.fullmatch(r"[A-Z][A-Za-z0-9]*", cells[0]):
            continue
        cells += [""] * (4 - len(cells))
        table[cells[0]] = OperatorSupport(cells[0], cells[1].upper() == "Y", cells[2], cells[3])
    return table


# onnx-tensorrt's restrictions on `Attention`, as code: optional inputs past attn_mask, outputs past
# the first, and these attributes (unless at their defaults) are unsupported.
ATTENTION_MAX_INPUTS = 4  # Q, K, V, attn_mask
ATTENTION_DEFAULT_ONLY = {"qk_matmul_output_mode": 0, "softcap": 0.0}
ONNX_TO_TRT_TYPES = {1: "FP32", 10: "FP16", 16: "BF16", 6: "INT32", 7: "INT64", 9: "BOOL", 2: "UINT8"}


def ops_tensorrt_cannot_parse(onnx_path: str | Path, table: dict[str, OperatorSupport] | None = None) -> list[str]:
    """Every op, input type or attribute of the graph that the stored onnx-tensorrt table does not support."""
    import onnx

    table = table if table is not None else trt_operator_table()
    model = _load(onnx_path)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    types.update({t.name: t.data_type for t in inferred.graph.initializer})
    problems = set()
    for node in inferred.graph.node:
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        row = table.get(op)
        if row is None or not row.supported:
            problems.add(f"{op}: {'not in' if row is None else 'unsupported in'} onnx-tensorrt's operator list")
            continue
        for name in node.input:
            kind = ONNX_TO_TRT_TYPES.get(types.get(name, 0))
            if name and kind and kind not in row.dtypes:
                problems.add(f"{op}: input type {kind} not in its supported types ({row.dtypes})")
        if op == "Attention":
            problems.update(_attention_problems(node))
    return sorted(problems)


def _attention_problems(node) -> list[str]:
    import onnx

    problems = []
    if len([i for i in node.input[ATTENTION_MAX_INPUTS:] if i]):
        problems.append("Attention: past_key / past_value / nonpad_kv_seqlen inputs are unsupported")
    if len([o for o in node.output[1:] if o]):
        problems.append("Attention: present_key / present_value / qk_matmul_output outputs are unsupported")
    for attribute in node.attribute:
        default = ATTENTION_DEFAULT_ONLY.get(attribute.name)
        if default is not None and onnx.helper.get_attribute_value(attribute) != default:
            problems.append(f"Attention: attribute {attribute.name} is unsupported")
    return problems
