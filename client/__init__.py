"""Client stage: rank documents through the Triton ensemble over gRPC or HTTP."""
