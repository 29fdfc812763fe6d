"""Synthetic reranking workloads: a query and documents of chosen lengths in Qwen2.5 tokens."""

from __future__ import annotations

import numpy as np

QUERY = "which documents talk about search relevance?"
# Every word is a single Qwen2.5 token (with its leading space), so N words ~ N tokens.
WORDS = (
    "the search model document query score river history science novel author music "
    "city water light time world house school book paper data system"
).split()
# Retrieved chunks: token lengths lognormal around a median; sigma 0.6 is typical of chunked corpora,
# 1.0 of mixed chunks and whole pages (perf/NOTES.md, "Length-aware dispatch", has what padding them costs).
LENGTH_SIGMAS = {"near-uniform": 0.25, "lognormal-0.6": 0.6, "lognormal-1.0": 1.0}
MEDIAN_TOKENS = 250
LONGEST_DOCUMENT = 8192


def synthetic_documents(count: int, tokens: int, seed: int = 0) -> list[str]:
    """`count` English-like documents of about `tokens` tokens each, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=tokens)) for _ in range(count)]


def mixed_lengths(count: int, sigma: float, *, median: int = MEDIAN_TOKENS, seed: int = 0) -> np.ndarray:
    """Token lengths of `count` retrieved chunks: lognormal(median, sigma), within 1..LONGEST_DOCUMENT."""
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(rng.lognormal(np.log(median), sigma, size=count)), 1, LONGEST_DOCUMENT).astype(int)


def mixed_documents(
    count: int, sigma: float, *, median: int = MEDIAN_TOKENS, outliers: int = 0, seed: int = 0
) -> list[str]:
    """`count` documents of mixed lengths, `outliers` of them 8k tokens long at random positions;
    reproducible from `seed`."""
    rng = np.random.default_rng(seed + 1)
    lengths = mixed_lengths(count, sigma, median=median, seed=seed)
    lengths[rng.choice(count, size=min(outliers, count), replace=False)] = LONGEST_DOCUMENT
    return [" ".join(rng.choice(WORDS, size=int(n))) for n in lengths]


def length_moments(lengths: str, median: int, *, samples: int = 100_000) -> tuple[int, int]:
    """(mean, standard deviation) in tokens of the document lengths "uniform" or a LENGTH_SIGMAS label
    draws around `median`: the normal distribution a benchmark with only normal lengths (AIPerf) can match."""
    if lengths == "uniform":
        return median, 0
    drawn = mixed_lengths(samples, LENGTH_SIGMAS[lengths], median=median)
    return round(float(drawn.mean())), round(float(drawn.std()))


def documents_for(count: int, lengths: str, median: int, seed: int = 0) -> list[str]:
    """`count` documents of `median` tokens ("uniform") or of mixed lengths around it (a LENGTH_SIGMAS label)."""
    if lengths == "uniform":
        return synthetic_documents(count, median, seed)
    return mixed_documents(count, LENGTH_SIGMAS[lengths], median=median, seed=seed)
