"""The reference's ranking rules, shared by the client and the gateway: order by score, and the normalised score."""

from __future__ import annotations

import numpy as np


def sigmoid_normalize(scores, estimated_max: float) -> np.ndarray:
    """The reference's normalisation: sigmoid(score - estimated_max / 2)."""
    return 1.0 / (1.0 + np.exp(-(np.asarray(scores, dtype=np.float64) - estimated_max / 2)))


def rank_order(scores: np.ndarray, top_k: int | None = None) -> list[int]:
    """Indices by score descending, ties by index ascending; the first `top_k` (all when None)."""
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    return np.lexsort((np.arange(len(scores)), -np.asarray(scores)))[:top_k].tolist()
