"""Refuse before work: with truncation refused (`truncate: NONE`), a request whose tokenizer cut a document is
answered once it is tokenized, before any of it is scored."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import ErrorKind, tagged
from .wire import TRUNCATE_PARAMETER, TRUNCATE_VALUES

# Documents named in one refusal; the count says how many more.
NAMED = 10


def truncate_rule(parameters: dict) -> str:
    """The request's `truncate` parameter ("END" when it names none).

    Raises:
        ValueError: naming the parameter and its values when it is something else.
    """
    value = parameters.get(TRUNCATE_PARAMETER, "END")
    if value not in TRUNCATE_VALUES:
        raise ValueError(f"parameter '{TRUNCATE_PARAMETER}' must be one of {', '.join(TRUNCATE_VALUES)}, got {value!r}")
    return value


def cut_documents(token_counts: np.ndarray, max_prompt_tokens: int) -> list[int]:
    """Positions of the documents whose prompt reaches the cap.

    Exact by the tokenizer's own rule: it cuts a prompt to `max_prompt_tokens` and leaves shorter
    ones whole, so a count below the cap is a whole document. A count at the cap is a cut document
    or one that fills the limit to the last token; both are refused, never scored cut.
    """
    return np.flatnonzero(np.asarray(token_counts) >= max_prompt_tokens).tolist()


def truncation_refusal(parameters: dict, rows: Sequence[tuple[np.ndarray, np.ndarray]], max_prompt_tokens: int) -> str | None:
    """The error message (tagged too_large) when the request refuses truncation and a document was cut, else None.

    `rows`: (positions in the request, prompt token counts) of each sub-batch.
    """
    if truncate_rule(parameters) == "END":
        return None
    counts = np.zeros(sum(len(positions) for positions, _ in rows), dtype=np.int64)
    for positions, batch_counts in rows:
        counts[positions] = np.asarray(batch_counts).reshape(-1)
    cut = cut_documents(counts, max_prompt_tokens)
    if not cut:
        return None
    named = ", ".join(f"documents[{i}]" for i in cut[:NAMED])
    more = f" and {len(cut) - NAMED} more" if len(cut) > NAMED else ""
    return tagged(ErrorKind.TOO_LARGE,
                  f"Input length of {named}{more} (prompt template + query + document) exceeds maximum allowed token "
                  f"size {max_prompt_tokens - 1}; allow truncation to score {'them' if len(cut) > 1 else 'it'} cut as "
                  "the reference cuts it")
