"""mxbai-rerank-v2 on NVIDIA Triton: export/, model_repository/, client/ and perf/ under one import name."""

__version__ = "0.1.0"
