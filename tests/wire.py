"""Requests built by hand over raw gRPC or HTTP, so that what RerankClient would refuse or split reaches the server."""

from __future__ import annotations

import numpy as np


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
