"""Export stage: spec, offline stand-ins, preprocessing, ONNX export and validation."""
