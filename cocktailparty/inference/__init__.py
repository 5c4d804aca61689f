"""Inference: the chunking Separator, ONNX export and the ONNX runner."""
