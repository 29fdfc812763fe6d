"""Client stage: rank documents through the Triton ensemble over gRPC or HTTP."""

from .rerank import AsyncRerankClient, RankResult, RerankClient, RerankError, rank_results, sigmoid_normalize

__all__ = ["AsyncRerankClient", "RankResult", "RerankClient", "RerankError", "rank_results", "sigmoid_normalize"]
