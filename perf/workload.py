"""Synthetic reranking workloads: a query and documents of a chosen length in Qwen2.5 tokens."""

from __future__ import annotations

import numpy as np

QUERY = "which documents talk about search relevance?"
# Every word is a single Qwen2.5 token (with its leading space), so N words ~ N tokens.
WORDS = (
    "the search model document query score river history science novel author music "
    "city water light time world house school book paper data system"
).split()


def synthetic_documents(count: int, tokens: int, seed: int = 0) -> list[str]:
    """`count` English-like documents of about `tokens` tokens each, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=tokens)) for _ in range(count)]
