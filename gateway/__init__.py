"""Gateway stage: the rerank HTTP APIs RAG stacks call (Cohere v2, Jina/vLLM, TEI, NVIDIA NIM) in front of Triton."""

from mxbai_triton import require_package_name

require_package_name(__name__, "gateway")

