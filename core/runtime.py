"""The one ONNX Runtime session factory: validation, the portable scorer, graph checks and benchmarks use it."""

from __future__ import annotations

from pathlib import Path


def onnx_session(model: str | Path | bytes, *, threads: int = 0, optimize: bool = True, cuda_options: dict | None = None):
    """An InferenceSession of `model` (a path, or a serialised ModelProto), on the CPU unless `cuda_options` are given.

    Args:
        model: The graph: a file (external data beside it) or serialised bytes.
        threads: Intra-op threads; 0 lets ONNX Runtime use every core.
        optimize: All graph optimisations (the serving setting); False runs the graph as written.
        cuda_options: Run on ONNX Runtime's CUDA provider (onnxruntime-gpu) with these provider
            options, as Triton's onnxruntime backend passes them; raises where that provider is missing.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    options.intra_op_num_threads = threads
    source = model if isinstance(model, bytes) else str(model)
    if cuda_options is None:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    # ONNX Runtime falls back to the CPU with a warning when the CUDA provider cannot load: refuse instead.
    session = ort.InferenceSession(source, options, providers=[("CUDAExecutionProvider", cuda_options)])
    if "CUDAExecutionProvider" not in session.get_providers():
        raise RuntimeError("ONNX Runtime's CUDA provider is not available (install onnxruntime-gpu: the `gpu` extra)")
    return session
