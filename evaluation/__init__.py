"""Evaluation stage: first stage, served rerankers, IR metrics side by side; bulk reranking lives in the client."""
