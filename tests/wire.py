"""Requests built by hand: raw gRPC or HTTP (what RerankClient would refuse or split reaches the server), and load workloads."""

from __future__ import annotations

import numpy as np


def varied_request(stream: int, n: int) -> tuple[str, list[str]]:
    """Request `n` of load stream `stream`: 1-8 documents of 4-43 words, so the batcher meets different shapes."""
    words = " ".join(f"w{stream}-{n}-{k}" for k in range(4 + (stream * 7 + n) % 40))
    return f"query {stream}/{n}", [f"{words} doc {d}" for d in range(1 + (stream + n) % 8)]


def text(*values: bytes) -> tuple[str, np.ndarray]:
    """A BYTES tensor of `values`."""
    return "BYTES", np.array(list(values), dtype=np.object_)


def raw_request(server, protocol: str, inputs: dict[str, tuple[str, np.ndarray]], model: str = "reranker") -> np.ndarray:
    """One inference request of `inputs` (name -> (datatype, array)); returns the flat scores."""
    if protocol == "grpc":
        import tritonclient.grpc as module

        url = server.grpc_url
    else:
        import tritonclient.http as module

        url = server.http_url
    tensors = []
    for name, (datatype, array) in inputs.items():
        tensor = module.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    client = module.InferenceServerClient(url, network_timeout=600.0) if protocol == "http" else module.InferenceServerClient(url)
    try:
        return client.infer(model, tensors).as_numpy("scores").reshape(-1)
    finally:
        client.close()


def model_statistics(server, model: str):
    """Triton's statistics of one model (its ModelStatistics message: inference_count, execution_count,
    inference_stats.success/fail...)."""
    import tritonclient.grpc as grpc

    with grpc.InferenceServerClient(server.grpc_url) as client:
        return client.get_inference_statistics(model).model_stats[0]
