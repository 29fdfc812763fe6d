"""How far reduced-precision scores are from fp32 for one request: the one owner of these formulas (perf fp16, perf
cpu-precision, the bf16 tests)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOP_K = 10


@dataclass(frozen=True)
class Agreement:
    """One request's reduced-precision scores against its fp32 scores."""

    documents: int
    finite: bool
    max_abs: float  # max |approx - exact|
    spread: float  # max - min of the request's fp32 scores
    spearman: float  # rank correlation of the two orderings
    top_k_overlap: float  # shared documents among each ordering's top TOP_K (or all, for fewer), 0..1

    @property
    def relative(self) -> float:
        """max |Δ| as a fraction of the request's score spread: what can reorder its documents."""
        return self.max_abs / self.spread if self.spread else float("inf")


def agreement(exact: np.ndarray, approx: np.ndarray, k: int = TOP_K) -> Agreement:
    """Compare one request's scores (fp32 `exact`, reduced `approx`, same document order)."""
    from scipy.stats import spearmanr

    exact, approx = np.asarray(exact, np.float64).ravel(), np.asarray(approx, np.float64).ravel()
    finite = bool(np.isfinite(approx).all())
    if not finite:
        return Agreement(len(exact), False, float("inf"), float(np.ptp(exact)), float("nan"), 0.0)
    k = min(k, len(exact))
    top = set(np.argsort(-exact, kind="stable")[:k]) & set(np.argsort(-approx, kind="stable")[:k])
    rho = float(spearmanr(exact, approx).statistic) if len(exact) > 1 else 1.0
    return Agreement(len(exact), True, float(np.max(np.abs(approx - exact))), float(np.ptp(exact)), rho, len(top) / k)


def summary_row(label: str, result: Agreement) -> str:
    """A Markdown table row: label, documents, finite, max |Δ|, spread, |Δ|/spread, Spearman, top-k overlap."""
    return (f"| {label} | {result.documents} | {'yes' if result.finite else 'NO'} | {result.max_abs:.4g} | {result.spread:.4g} | "
            f"{result.relative:.3g} | {result.spearman:.4f} | {result.top_k_overlap:.2f} |")


TABLE_HEADER = ("| request | documents | finite | max abs diff | fp32 score spread | max diff / spread | Spearman | "
                f"top-{TOP_K} overlap |\n|---|---:|---|---:|---:|---:|---:|---:|")
