"""ONNX export of layerserve models: ``to_onnx(model, path=None, *, opset=None)``."""

from layerserve.export.api import output_names, save_onnx, to_onnx
from layerserve.export.opsets import MIN_OPSET, max_runtime_opset
from layerserve.export.registry import converter, supported_layers

__all__ = [
    "MIN_OPSET",
    "converter",
    "max_runtime_opset",
    "output_names",
    "save_onnx",
    "supported_layers",
    "to_onnx",
]
