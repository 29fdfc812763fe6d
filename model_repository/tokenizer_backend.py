"""Triton python model: (query, documents, instruction) -> bucket-padded input_ids and attention_mask."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mxbai_triton.export.preprocess import RerankPreprocessor, pad_left, padded_length
from mxbai_triton.export.spec import ModelSpec


class RequestError(ValueError):
    """A request-level problem; becomes that request's error response, the model keeps serving."""


def decode_text(tensor, name: str, *, max_items: int | None = None, single: bool = False) -> list[str]:
    """BYTES tensor (numpy object array) -> list of str, strict UTF-8, with errors naming the input."""
    if tensor is None:
        raise RequestError(f"missing input '{name}'")
    values = tensor.reshape(-1)
    if single and values.size != 1:
        raise RequestError(f"'{name}' must hold exactly one string, got {values.size}")
    if values.size == 0:
        raise RequestError(f"'{name}' is empty: send at least one document")
    if max_items is not None and values.size > max_items:
        raise RequestError(
            f"'{name}' has {values.size} items, more than the per-request limit of {max_items}; "
            "split the list (RerankClient does this for you)"
        )
    out = []
    for i, value in enumerate(values):
        if isinstance(value, str):
            out.append(value)
            continue
        try:
            out.append(bytes(value).decode("utf-8"))
        except UnicodeDecodeError as error:
            where = name if single else f"{name}[{i}]"
            raise RequestError(f"'{where}' is not valid UTF-8 ({error.reason} at byte {error.start})") from None
    return out


class TokenizerCore:
    """The framework-free part: requests of text in, padded int arrays out (tested without Triton)."""

    def __init__(self, model_dir: str | Path):
        self.spec = ModelSpec.load(model_dir)
        self.preprocessor = RerankPreprocessor.from_dir(model_dir, self.spec)
        self.buckets = self.spec.seq_buckets

    def parse(self, query, documents, instruction) -> tuple[str, list[str], str | None]:
        query_text = decode_text(query, "query", single=True)[0]
        docs = decode_text(documents, "documents", max_items=self.spec.max_batch_size)
        inst = None if instruction is None else decode_text(instruction, "instruction", single=True)[0]
        return query_text, docs, inst

    def tokenize(self, parsed: list[tuple[str, list[str], str | None]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """One tokenizer call for all requests; each padded to the smallest bucket that fits it."""
        outputs = []
        for sequences in self.preprocessor.encode_many(parsed):
            length = padded_length(max(map(len, sequences)), multiple_of=self.spec.pad_to_multiple_of, buckets=self.buckets)
            outputs.append(pad_left(sequences, length, self.spec.pad_token_id))
        return outputs


class TritonPythonModel:
    """Tokenizer step of the ensemble."""

    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        self.core = TokenizerCore(Path(args["model_repository"]) / args["model_version"])
        spec = self.core.spec
        self.out_names = (spec.input_ids.name, spec.attention_mask.name)
        self.out_dtypes = [
            pb_utils.triton_string_to_numpy(pb_utils.get_output_config_by_name(config, n)["data_type"])
            for n in self.out_names
        ]

    def execute(self, requests):
        pb = self.pb
        parsed, errors = [], {}
        for i, request in enumerate(requests):
            try:
                parsed.append(self.core.parse(*(
                    _numpy_or_none(pb.get_input_tensor_by_name(request, n)) for n in ("query", "documents", "instruction")
                )))
            except RequestError as error:
                errors[i] = str(error)
        encoded = iter(self.core.tokenize(parsed))
        responses = []
        for i in range(len(requests)):
            if i in errors:
                responses.append(pb.InferenceResponse(output_tensors=[], error=_invalid_argument(pb, errors[i])))
                continue
            arrays = next(encoded)
            responses.append(pb.InferenceResponse(output_tensors=[
                pb.Tensor(n, a.astype(d, copy=False)) for n, a, d in zip(self.out_names, arrays, self.out_dtypes)
            ]))
        return responses


def _invalid_argument(pb, message: str):
    # Status INVALID_ARG (HTTP 400) where the python backend supports error codes.
    code = getattr(pb.TritonError, "INVALID_ARG", None)
    return pb.TritonError(message) if code is None else pb.TritonError(message, code)


def _numpy_or_none(tensor):
    return None if tensor is None else tensor.as_numpy()
