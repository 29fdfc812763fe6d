"""Model repository stage: Triton configs generated from the spec, the python backends, the embedded server, publishing."""

from mxbai_triton import require_package_name

require_package_name(__name__, "model_repository")

