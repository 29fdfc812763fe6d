"""The one ONNX Runtime session factory: validation, the portable scorer, graph checks and benchmarks use it."""

from __future__ import annotations

from pathlib import Path


def onnx_session(model: str | Path | bytes, *, threads: int = 0, optimize: bool = True):
    """A CPU InferenceSession of `model` (a path, or a serialised ModelProto).

    Args:
        model: The graph: a file (external data beside it) or serialised bytes.
        threads: Intra-op threads; 0 lets ONNX Runtime use every core.
        optimize: All graph optimisations (the serving setting); False runs the graph as written.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    options.intra_op_num_threads = threads
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
