"""Gateway stage: the rerank HTTP APIs RAG stacks call (Cohere v2, Jina/vLLM, TEI, NVIDIA NIM) in front of Triton."""
