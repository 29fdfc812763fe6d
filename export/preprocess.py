"""Reference-exact prompt building and truncation with the fast `tokenizers` library (no torch)."""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import Tokenizer

from .spec import ModelSpec

TOKENIZER_FILENAME = "tokenizer.json"


class RerankPreprocessor:
    """Turns (query, documents, instruction) into token ids exactly as `MxbaiRerankV2.prepare_inputs`.

    Special-token strings inside user text (e.g. "<|im_end|>") become special tokens, as the Hugging
    Face tokenizer used by the reference does: parity over sanitising.
    """

    def __init__(self, tokenizer: Tokenizer, spec: ModelSpec, *, max_length: int | None = None):
        self.spec = spec
        self._tokenizer = tokenizer
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        t = spec.template
        self.prefix_ids = self._ids(t.prefix)
        self.suffix_ids = self._ids(t.suffix)
        self.sep_ids = self._ids(t.sep)
        self.task_ids = self._ids(t.task)
        self.tail_ids = self.sep_ids + self.task_ids + self.suffix_ids
        self.predefined_length = len(self.prefix_ids) + len(self.task_ids) + len(self.suffix_ids) + len(self.sep_ids)
        requested = spec.max_length if max_length is None else max_length
        if requested < 1:
            raise ValueError(f"max_length must be >= 1, got {requested}")
        # The reference shrinks max_length so that the template always fits the model.
        self.max_length = min(requested, spec.model_max_length - self.predefined_length)

    @classmethod
    def from_dir(cls, directory: str | Path, spec: ModelSpec | None = None, **kwargs) -> "RerankPreprocessor":
        """Load `tokenizer.json` (and `spec.json` unless given) from an export or checkpoint dir."""
        directory = Path(directory)
        spec = spec or ModelSpec.load(directory)
        return cls(Tokenizer.from_file(str(directory / TOKENIZER_FILENAME)), spec, **kwargs)

    def _ids(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def token_id(self, text: str) -> int:
        """The single token id of `text`; raises if it is not exactly one token."""
        ids = self._ids(text)
        if len(ids) != 1:
            raise ValueError(f"{text!r} is {len(ids)} tokens, expected 1")
        return ids[0]

    def encode(
        self, query: str, documents: Sequence[str], *, instruction: str | None = None
    ) -> list[list[int]]:
        """Token ids of each (query, document) prompt, unpadded, in document order."""
        return self.encode_many([(query, documents, instruction)])[0]

    def encode_many(
        self, requests: Sequence[tuple[str, Sequence[str], str | None]]
    ) -> list[list[list[int]]]:
        """`encode` for several (query, documents, instruction) requests with two tokenizer calls.

        All query prompts go through one batch call and all documents of all requests through
        another, so the Rust tokenizer parallelises across everything at once.
        """
        t = self.spec.template
        query_prompts = []
        for query, _, instruction in requests:
            prompt = t.query.format(query=query)
            if instruction:
                prompt = t.instruction.format(instruction=instruction) + t.sep + prompt
            query_prompts.append(prompt)
        query_encodings = self._tokenizer.encode_batch(query_prompts, add_special_tokens=False)
        doc_encodings = iter(self._tokenizer.encode_batch(
            [t.document.format(document=d) for _, documents, _ in requests for d in documents],
            add_special_tokens=False,
        ))
        results = []
        for (_, documents, _), query_encoding in zip(requests, query_encodings):
            query_ids = query_encoding.ids[: self.max_length * 3 // 4]
            doc_budget = min(self.spec.model_max_length - len(query_ids) - self.predefined_length, self.max_length)
            head = self.prefix_ids + query_ids
            pair_budget = self.max_length - len(query_ids)
            rows = []
            for _ in documents:
                second = self.sep_ids + next(doc_encodings).ids[:doc_budget]
                excess = len(second) - pair_budget
                # Hugging Face's "only_second" truncation leaves the pair untouched when the second
                # sequence is not longer than what must go (it only logs an error).
                if 0 < excess < len(second):
                    second = second[:-excess]
                rows.append(head + second + self.tail_ids)
            results.append(rows)
        return results

    def encode_batch(
        self, queries: Sequence[str], documents: Sequence[str], *, instruction: str | None = None
    ) -> list[list[int]]:
        """Pairwise form, as the reference's `predict(queries, documents)` takes it."""
        if len(queries) != len(documents):
            raise ValueError(f"{len(queries)} queries but {len(documents)} documents")
        return [rows[0] for rows in self.encode_many([(q, [d], instruction) for q, d in zip(queries, documents)])]


def padded_length(longest: int, *, multiple_of: int = 8, buckets: Sequence[int] | None = None) -> int:
    """Length to left-pad a batch to: the next multiple of `multiple_of`, or the smallest bucket."""
    if buckets:
        index = bisect.bisect_left(buckets, longest)
        if index == len(buckets):
            raise ValueError(f"sequence of {longest} tokens exceeds the largest bucket {buckets[-1]}")
        return buckets[index]
    return -(-longest // multiple_of) * multiple_of


def pad_left(sequences: Sequence[Sequence[int]], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-pad to `length` as the reference does; returns int64 (input_ids, attention_mask)."""
    input_ids = np.full((len(sequences), length), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(sequences), length), dtype=np.int64)
    for row, ids in enumerate(sequences):
        if len(ids) > length:
            raise ValueError(f"sequence of {len(ids)} tokens does not fit padded length {length}")
        if ids:
            input_ids[row, length - len(ids):] = ids
            attention_mask[row, length - len(ids):] = 1
    return input_ids, attention_mask
