"""Export stage: offline stand-ins, the folded-head ONNX export and its validation, TensorRT engines."""
