"""Rescaling: ``cast(x, float32) * scale + offset``."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import _config
from layerserve.errors import ConfigError, ShapeError, received
from layerserve.layers.base import Layer
from layerserve.layers.tensor import Shape

_ENCODED_ARRAYS = ("__numpy__", "__tensor__")


def decode_parameter(value: Any, name: str) -> tuple[Any, np.ndarray]:
    """``(plain value for get_config, float64 array)`` from a number, a (nested) list or a
    Keras 3 serialized array ``{"class_name": "__numpy__", "config": {"value", "dtype"}}``."""
    if isinstance(value, dict) and value.get("class_name") in _ENCODED_ARRAYS:
        value = (value.get("config") or {}).get("value")
    if value is None:
        raise ConfigError(
            f"Expected `{name}` to be a number or an array of numbers. " + received(name, value)
        )
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, tuple):
        value = list(value)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or isinstance(value, (bool, str)) or array.dtype.kind != "f":
        raise ConfigError(
            f"Expected `{name}` to be a number or an array of numbers. " + received(name, value)
        )
    return value, array


def rescaling_output_shape(
    input_shape: Shape, parameter_shapes: list[tuple[int, ...]], layer_name: str
) -> Shape:
    """The input shape: a scale or offset array broadcasts into it from the right, and
    must not add axes or sizes (Keras declares the output shape to be the input's)."""
    input_shape = tuple(input_shape)
    for shape in parameter_shapes:
        extra = len(shape) - len(input_shape)
        fits = extra <= 0 or all(d == 1 for d in shape[:extra])
        for size, dim in zip(reversed(shape), reversed(input_shape), strict=False):
            if size != 1 and dim is not None and size != dim:
                fits = False
        if not fits:
            raise ShapeError(
                f"Rescaling {layer_name}: a scale or offset of shape {shape} does not "
                f"broadcast to the input shape {input_shape} without changing it."
            )
    return input_shape


class Rescaling(Layer):
    """Multiplies inputs by ``scale`` and adds ``offset``, in the layer's float dtype.

    Args:
        scale: A number or a per-channel (broadcastable) array. In Keras 3, when the
            global image data format is channels_first, an array ``scale`` of rank < 3 is
            padded with trailing axes of size 1 (so ``(C,)`` scales the channel axis of
            ``(N, C, H, W)``); the offset is not reshaped.
        offset: A number or a broadcastable array.

    Input shape:
        Arbitrary; integer inputs (uint8 images) are cast to the float dtype first.

    Output shape:
        Same as the input.
    """

    casts_inputs = True

    def __init__(self, scale: Any, offset: Any = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale, scale_array = decode_parameter(scale, "scale")
        self.offset, offset_array = decode_parameter(offset, "offset")
        # Keras 3 reads the global format when it is called; layerserve when the layer is
        # created (a process does not switch formats between loading and predicting).
        if (
            self.keras_version >= (3, 0, 0)
            and scale_array.ndim > 0
            and _config.image_data_format() == "channels_first"
        ):
            scale_array = scale_array.reshape(scale_array.shape + (1,) * (3 - scale_array.ndim))
        self.scale_value = scale_array.astype(self.dtype)
        self.offset_value = offset_array.astype(self.dtype)
        self.supports_masking = self.keras_version >= (3, 0, 0)  # tf.keras drops masks
        self.built = True

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        rescaling_output_shape(inputs.shape, self._parameter_shapes(), self.name)
        return inputs * self.scale_value + self.offset_value

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return rescaling_output_shape(input_shape, self._parameter_shapes(), self.name)

    def _parameter_shapes(self) -> list[tuple[int, ...]]:
        return [self.scale_value.shape, self.offset_value.shape]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}
