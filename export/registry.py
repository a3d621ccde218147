"""The converter registry: one converter per layer class, registered by decorator."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from layerserve.errors import NotSupportedError
from layerserve.export.builder import GraphBuilder, Value
from layerserve.layers.base import Layer


@dataclass
class Conversion:
    """What a converter gets: the layer, its input values, the masks its call receives
    (one per input), the masks its output masks derive from (``previous_masks``: the
    same, except where Keras 3 falls back to the inputs' own masks), the static output
    shapes and dtypes the model graph computed, and the builder to add nodes to."""

    layer: Layer
    builder: GraphBuilder
    inputs: list[Value]
    masks: list[Value | None]
    output_shapes: list[tuple[int | None, ...]]
    output_dtypes: list[str]
    training: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    previous_masks: list[Value | None] | None = None

    def __post_init__(self) -> None:
        if self.previous_masks is None:
            self.previous_masks = list(self.masks)

    def value(self, name: str, index: int = 0) -> Value:
        return Value(name, self.output_shapes[index], self.output_dtypes[index])

    def require_float32(self, op: str) -> None:
        """Refuses an input of another dtype for ``op``, which onnxruntime's CPU kernels
        run on float32 alone (a float64 graph would be valid ONNX that no session can
        load)."""
        dtype = np.dtype(self.inputs[0].dtype)
        if dtype != np.float32:
            raise NotSupportedError(
                f"Layer {self.layer.name!r} ({type(self.layer).__name__}): onnxruntime runs "
                f"ONNX {op} on float32 only, so this layer exports only with float32 inputs "
                f"(its dtype policy float32 or mixed). Received: dtype={dtype}"
            )


@dataclass
class Converted:
    """Output names and, for layers that compute masks, the output mask names."""

    outputs: list[str]
    masks: list[str | None] | None = None


Converter = Callable[[Conversion], Converted]
_CONVERTERS: dict[type, Converter] = {}


def converter(*layer_classes: type) -> Callable[[Converter], Converter]:
    def register(function: Converter) -> Converter:
        for cls in layer_classes:
            if cls in _CONVERTERS:
                warnings.warn(f"Replacing the ONNX converter of {cls.__name__}.", stacklevel=2)
            _CONVERTERS[cls] = function
        return function

    return register


def find_converter(layer: Layer) -> Converter:
    for cls in type(layer).__mro__:
        if cls in _CONVERTERS:
            return _CONVERTERS[cls]
    supported = ", ".join(sorted(c.__name__ for c in _CONVERTERS))
    raise NotSupportedError(
        f"Layer {layer.name!r} ({type(layer).__name__}) has no ONNX converter. "
        f"Supported layers: {supported}."
    )


def supported_layers() -> list[str]:
    return sorted(c.__name__ for c in _CONVERTERS)
