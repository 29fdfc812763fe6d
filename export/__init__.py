"""Export stage: offline stand-ins, the folded-head ONNX export and its validation, TensorRT engines."""

from mxbai_triton import require_package_name

require_package_name(__name__, "export")

