"""Exporters: ONNX artifacts, TensorRT engines, Triton Inference Server repositories."""
