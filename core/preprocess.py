"""Reference-exact prompt building and truncation with the fast `tokenizers` library (no torch)."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .model import ModelSpec
from .text_cut import TextCutter, encode_heads

if TYPE_CHECKING:
    from tokenizers import Tokenizer

TOKENIZER_FILENAME = "tokenizer.json"


@functools.lru_cache(maxsize=8)
def _load_tokenizer(path: str, mtime_ns: int, size: int, special_as_text: bool = False) -> "Tokenizer":
    """One parse of a 7 MB tokenizer.json per file version and mode (~0.7 s each): every preprocessor sets
    it up the same way (no truncation, no padding) and only reads it afterwards."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(path)
    tokenizer.encode_special_tokens = special_as_text
    return tokenizer


class RerankPreprocessor:
    """Turns (query, documents, instruction) into token ids exactly as `MxbaiRerankV2.prepare_inputs`.

    Special-token strings inside user text (e.g. "<|im_end|>") become special tokens, as the Hugging
    Face tokenizer used by the reference does (parity), unless the deployment's `special_tokens_in_text`
    is "text": then `text_tokenizer` (the same file with `encode_special_tokens`) encodes user text as
    plain text, while the template keeps its special tokens.
    """

    def __init__(self, tokenizer: "Tokenizer", spec: ModelSpec, *, max_length: int | None = None,
                 text_tokenizer: "Tokenizer | None" = None, special_tokens_in_text: str = "parse"):
        self.spec = spec
        self._tokenizer = tokenizer
        self._text_tokenizer = text_tokenizer or tokenizer
        for t in {id(tokenizer): tokenizer, id(self._text_tokenizer): self._text_tokenizer}.values():
            t.no_truncation()
            t.no_padding()
        if special_tokens_in_text == "text" and not self._text_tokenizer.encode_special_tokens:
            raise ValueError("special_tokens_in_text 'text' needs a text tokenizer with encode_special_tokens set")
        self._cutter = TextCutter(self._text_tokenizer)
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
    def from_dir(cls, directory: str | Path, spec: ModelSpec | None = None, *, special_tokens_in_text: str = "parse",
                 **kwargs) -> "RerankPreprocessor":
        """Load `tokenizer.json` (and `spec.json` unless given) from an export or a repository's model folder."""
        directory = Path(directory)
        spec = spec or ModelSpec.load(directory)
        path = (directory / TOKENIZER_FILENAME).resolve()
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        text = _load_tokenizer(*key, special_as_text=True) if special_tokens_in_text == "text" else None
        return cls(_load_tokenizer(*key), spec, text_tokenizer=text, special_tokens_in_text=special_tokens_in_text, **kwargs)

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
        """`encode` for several (query, documents, instruction) requests: unpadded rows per request."""
        return [[request.row(i) for i in range(request.rows)] for request in self.encode_arrays(requests)]

    def encode_arrays(self, requests: Sequence[tuple[str, Sequence[str], str | None]]) -> list["EncodedRequest"]:
        """Every request's prompts as arrays, from two tokenizer calls in all.

        All query prompts go through one batch call and all documents of all requests through
        another, so the Rust tokenizer parallelises across everything at once; truncation and the
        template are applied with array arithmetic, never token by token in Python.
        """
        t = self.spec.template
        query_prompts = []
        for query, _, instruction in requests:
            prompt = t.query.format(query=query)
            if instruction:
                prompt = t.instruction.format(instruction=instruction) + t.sep + prompt
            query_prompts.append(prompt)
        # Only the tokens a prompt can keep are computed exactly: a 20 MB text costs what its head costs.
        query_keep = self.max_length * 3 // 4
        query_encodings = encode_heads(self._text_tokenizer, self._cutter, query_prompts, query_keep)
        doc_ids = encode_heads(self._text_tokenizer, self._cutter,
                               [t.document.format(document=d) for _, documents, _ in requests for d in documents],
                               self.max_length)
        doc_lengths = np.fromiter(map(len, doc_ids), dtype=np.int64, count=len(doc_ids))
        flat = np.fromiter(itertools.chain.from_iterable(doc_ids), dtype=np.int64, count=int(doc_lengths.sum()))
        doc_offsets = np.concatenate(([0], np.cumsum(doc_lengths)))
        results, first = [], 0
        for (_, documents, _), query_encoding in zip(requests, query_encodings):
            last = first + len(documents)
            query_ids = query_encoding[:query_keep]
            doc_budget = min(self.spec.model_max_length - len(query_ids) - self.predefined_length, self.max_length)
            lengths = doc_lengths[first:last]
            # ids[:doc_budget] with Python's slice semantics (a negative budget drops from the end).
            kept = np.clip(lengths + doc_budget if doc_budget < 0 else np.minimum(lengths, doc_budget), 0, None)
            second = len(self.sep_ids) + kept
            pair_budget = self.max_length - len(query_ids)
            excess = second - pair_budget
            # Hugging Face's "only_second" truncation leaves the pair untouched when the second
            # sequence is not longer than what must go (it only logs an error).
            second = np.where((excess > 0) & (excess < second), pair_budget, second)
            results.append(EncodedRequest(
                head=np.asarray(self.prefix_ids + query_ids, dtype=np.int64),
                sep=np.asarray(self.sep_ids, dtype=np.int64),
                tail=np.asarray(self.tail_ids, dtype=np.int64),
                documents=flat[doc_offsets[first]:doc_offsets[last]],
                document_starts=doc_offsets[first:last] - doc_offsets[first],
                second_lengths=second,
            ))
            first = last
        return results

    def encode_batch(
        self, queries: Sequence[str], documents: Sequence[str], *, instruction: str | None = None
    ) -> list[list[int]]:
        """Pairwise form, as the reference's `predict(queries, documents)` takes it."""
        if len(queries) != len(documents):
            raise ValueError(f"{len(queries)} queries but {len(documents)} documents")
        return [rows[0] for rows in self.encode_many([(q, [d], instruction) for q, d in zip(queries, documents)])]


def padded_lengths(lengths, *, multiple_of: int = 8, buckets: Sequence[int] | None = None) -> np.ndarray:
    """Length to pad a batch whose longest row has each of `lengths` tokens to: the next multiple of
    `multiple_of`, or the smallest bucket that fits."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if not buckets:
        return -(-lengths // multiple_of) * multiple_of
    index = np.searchsorted(buckets, lengths, side="left")
    if len(lengths) and int(index.max()) == len(buckets):
        raise ValueError(f"sequence of {int(lengths.max())} tokens exceeds the largest bucket {buckets[-1]}")
    return np.asarray(buckets, dtype=np.int64)[index]


def padded_length(longest: int, *, multiple_of: int = 8, buckets: Sequence[int] | None = None) -> int:
    """`padded_lengths` of one batch."""
    return int(padded_lengths([longest], multiple_of=multiple_of, buckets=buckets)[0])


def pad_sequences(
    sequences: Sequence[Sequence[int]], length: int, pad_id: int, side: str = "left"
) -> tuple[np.ndarray, np.ndarray]:
    """Pad to `length` on `side` ("left" as the reference does, "right" for the fused graph); int64 (input_ids, attention_mask)."""
    input_ids = np.full((len(sequences), length), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(sequences), length), dtype=np.int64)
    for row, ids in enumerate(sequences):
        if len(ids) > length:
            raise ValueError(f"sequence of {len(ids)} tokens does not fit padded length {length}")
        if ids:
            start = length - len(ids) if side == "left" else 0
            input_ids[row, start:start + len(ids)] = ids
            attention_mask[row, start:start + len(ids)] = 1
    return input_ids, attention_mask


def repad(input_ids: np.ndarray, attention_mask: np.ndarray, pad_id: int, side: str) -> tuple[np.ndarray, np.ndarray]:
    """The same rows with their real tokens moved to the other `side` (e.g. the reference's left-padded
    batches for a right-padded graph)."""
    rows = [ids[mask.astype(bool)].tolist() for ids, mask in zip(input_ids, attention_mask)]
    return pad_sequences(rows, input_ids.shape[1], pad_id, side)


@dataclass(frozen=True)
class EncodedRequest:
    """One request's prompts without padding: the shared head (template prefix + query), each row's
    second part (separator + document, truncated) and the shared tail (template suffix).

    Row i is head + (sep + document i)[:second_lengths[i]] + tail, exactly as the reference builds it.
    """

    head: np.ndarray
    sep: np.ndarray
    tail: np.ndarray
    documents: np.ndarray  # every document's ids, concatenated untruncated
    document_starts: np.ndarray  # where each row's document starts in `documents`
    second_lengths: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.second_lengths)

    @property
    def lengths(self) -> np.ndarray:
        """Token count of each row's prompt."""
        return len(self.head) + self.second_lengths + len(self.tail)

    def row(self, i: int) -> list[int]:
        """Row i's token ids as a list."""
        return self.padded(np.array([i]), int(self.lengths[i]), pad_id=0)[0][0].tolist()

    def padded(self, rows: np.ndarray, length: int, *, pad_id: int, side: str = "left") -> tuple[np.ndarray, np.ndarray]:
        """int64 (input_ids, attention_mask) of `rows`, padded on `side` to `length` tokens.

        One gather over [rows, length] from the concatenated pieces: no per-row or per-token Python.
        """
        n = self.lengths[rows]
        if len(rows) and int(n.max()) > length:
            raise ValueError(f"sequence of {int(n.max())} tokens does not fit padded length {length}")
        head, sep, tail = len(self.head), len(self.sep), len(self.tail)
        start = length - n if side == "left" else np.zeros_like(n)
        position = np.arange(length)[None, :] - start[:, None]  # index within the row's prompt
        valid = (position >= 0) & (position < n[:, None])
        second = self.second_lengths[rows][:, None]
        in_second = position - head
        pool = np.concatenate((self.head, self.sep, self.tail, self.documents))
        source = np.where(
            position < head, position,
            np.where(in_second < second,
                     np.where(in_second < sep, head + in_second,
                              head + sep + tail + self.document_starts[rows][:, None] + in_second - sep),
                     head + sep + (in_second - second)),
        )
        ids = np.where(valid, pool[np.clip(source, 0, len(pool) - 1)], pad_id)
        return ids.astype(np.int64, copy=False), valid.astype(np.int64)
