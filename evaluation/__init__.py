"""Evaluation stage: first stage, served rerankers, IR metrics side by side; bulk reranking lives in the client."""

from mxbai_triton import require_package_name

require_package_name(__name__, "evaluation")

