"""Client stage: rank documents through the Triton ensemble over gRPC or HTTP."""

from mxbai_triton import require_package_name

require_package_name(__name__, "client")  # before anything of the folder loads under that name

from .rerank import (  # noqa: E402
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
