"""Model repository stage: Triton configs generated from the spec, the python backends, the embedded server, publishing."""
