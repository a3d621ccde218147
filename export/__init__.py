"""ONNX export of layerserve models (see the export issue)."""
