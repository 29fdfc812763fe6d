"""Client stage: rank documents through the Triton ensemble over gRPC or HTTP."""

from .rerank import (
    NO_RETRY,
    AsyncRerankClient,
    RankResult,
    RerankClient,
    RerankError,
    RetryPolicy,
    rank_results,
    sigmoid_normalize,
)

__all__ = [
    "AsyncRerankClient", "NO_RETRY", "RankResult", "RerankClient", "RerankError", "RetryPolicy",
    "rank_results", "sigmoid_normalize",
]
