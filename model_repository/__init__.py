"""Model repository stage: Triton configs generated from the spec, python backends, embedded server."""
