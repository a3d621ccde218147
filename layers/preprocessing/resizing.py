"""Resizing: images to ``height x width`` (TensorFlow's half-pixel resize rules)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from layerserve.errors import ConfigError, NotSupportedError, received
from layerserve.layers.base import Layer
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.preprocessing import image_utils
from layerserve.layers.tensor import Shape

EXACT_INTERPOLATIONS = ("bilinear", "nearest")
# Known to Keras 3 or tf.keras, with no exact ONNX form (see the spec's Resizing table).
INEXACT_INTERPOLATIONS = ("bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic")


@dataclass(frozen=True)
class ResizePlan:
    """What Resizing does to an ``in_h x in_w`` image: an optional aspect-ratio crop
    ``(top, left, height, width)`` or padding ``(rows, columns)`` on each side, then a
    resize; nearest-neighbour resizing reads the source ``rows`` and ``columns``."""

    crop: tuple[int, int, int, int] | None
    pad: tuple[int, int] | None
    rows: np.ndarray | None = None
    columns: np.ndarray | None = None

    @property
    def nearest(self) -> bool:
        return self.rows is not None


class Resizing(Layer):
    """Resizes images to ``height x width``.

    Args:
        height, width: The output size.
        interpolation: ``"bilinear"`` or ``"nearest"`` (half-pixel centres, as TensorFlow
            and JAX compute them). ``bicubic``, ``area``, ``lanczos3``, ``lanczos5``,
            ``gaussian`` and ``mitchellcubic`` are refused: they have no exact ONNX form.
        crop_to_aspect_ratio: First crop the largest centred window of the target's
            aspect ratio.
        pad_to_aspect_ratio: Keras 3: first pad with ``fill_value`` to the target's
            aspect ratio (bands of equal size on both sides).
        fill_mode: Keras 3; only ``"constant"`` (Keras's backends support nothing else).
        fill_value: Keras 3: the padding value.
        antialias: Keras 3: an anti-aliasing filter when an axis shrinks; refused then
            (no exact ONNX form). It changes nothing when no axis shrinks.
        data_format: Keras 3; None is the global image data format (tf.keras is
            channels_last only).

    Input shape:
        4D ``(N, H, W, C)`` or ``(N, C, H, W)``. tf.keras casts to the float dtype;
        Keras 3 casts float inputs and keeps integer ones (nearest keeps their dtype;
        bilinear rounds back to it, which layerserve refuses: .5 ties round either way
        depending on the backend's float arithmetic).

    Output shape:
        ``(N, height, width, C)`` or ``(N, C, height, width)``.
    """

    def __init__(
        self,
        height: int,
        width: int,
        interpolation: str = "bilinear",
        crop_to_aspect_ratio: bool = False,
        pad_to_aspect_ratio: bool = False,
        fill_mode: str = "constant",
        fill_value: float = 0.0,
        antialias: bool = False,
        data_format: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.height = image_utils.positive_size(height, "height")
        self.width = image_utils.positive_size(width, "width")
        self.interpolation = _interpolation(self, interpolation)
        self.crop_to_aspect_ratio = _flag(crop_to_aspect_ratio, "crop_to_aspect_ratio")
        self.pad_to_aspect_ratio = _flag(pad_to_aspect_ratio, "pad_to_aspect_ratio")
        if self.crop_to_aspect_ratio and self.pad_to_aspect_ratio:
            raise ConfigError(
                "Only one of `pad_to_aspect_ratio` & `crop_to_aspect_ratio` can be `True`. "
                "Received: crop_to_aspect_ratio=True, pad_to_aspect_ratio=True"
            )
        if fill_mode != "constant":
            raise ConfigError(
                "Invalid value for argument `fill_mode`. Only `'constant'` is supported. "
                + received("fill_mode", fill_mode)
            )
        self.fill_mode = fill_mode
        self.fill_value = image_utils.number(fill_value, "fill_value")
        self.antialias = _flag(antialias, "antialias")
        self.data_format = image_utils.image_data_format(data_format, self.keras_version)
        self.input_spec = InputSpec(ndim=4)
        self.built = True

    # ---- the plan shared by the reference and the converter ----------------------------
    def plan(self, in_h: int, in_w: int) -> ResizePlan:
        crop = pad = None
        if self.crop_to_aspect_ratio:
            crop = image_utils.aspect_crop_box(in_h, in_w, self.height, self.width)
            in_h, in_w = crop[2], crop[3]
        elif self.pad_to_aspect_ratio:
            pad = image_utils.aspect_pad(in_h, in_w, self.height, self.width)
            in_h, in_w = in_h + 2 * pad[0], in_w + 2 * pad[1]
        if self.interpolation == "nearest":
            rows, columns = (
                self._nearest(i, o) for i, o in ((in_h, self.height), (in_w, self.width))
            )
            return ResizePlan(crop, pad, rows, columns)
        if self.antialias and (in_h > self.height or in_w > self.width):
            raise NotSupportedError(
                f"Resizing {self.name}: antialiased bilinear downscaling ({in_h}x{in_w} to "
                f"{self.height}x{self.width}) has no exact ONNX form. "
                + received("antialias", True)
            )
        return ResizePlan(crop, pad)

    def _nearest(self, in_size: int, out_size: int) -> np.ndarray:
        if self.keras_version >= (3, 0, 0):
            return image_utils.keras3_nearest_indices(self, in_size, out_size)
        return image_utils.nearest_indices(in_size, out_size, float32_scale=True)

    # ---- the layer contract --------------------------------------------------------------
    def output_dtype(self, input_dtype: str) -> str:
        if self.keras_version < (3, 0, 0) or np.dtype(input_dtype).kind == "f":
            return self.dtype
        if self.interpolation != "nearest":
            raise NotSupportedError(
                f"Resizing {self.name}: Keras 3 rounds bilinear results back to the integer "
                f"input dtype {input_dtype}, and whether a .5 tie rounds up or down depends on "
                "its backend's float arithmetic. Cast the images to float first. "
                + received("interpolation", self.interpolation)
            )
        return input_dtype

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        dtype = self.output_dtype(inputs.dtype.name)
        x = inputs.astype(dtype)
        h_axis, w_axis = image_utils.spatial_axes(self.data_format)
        plan = self.plan(x.shape[h_axis], x.shape[w_axis])
        if plan.crop is not None:
            x = image_utils.crop(x, *plan.crop, self.data_format)
        if plan.pad is not None:
            x = image_utils.pad(x, *plan.pad, self.fill_value, self.data_format)
        if plan.nearest:
            return image_utils.resize_nearest(x, plan.rows, plan.columns, self.data_format)
        return image_utils.resize_bilinear(x, self.height, self.width, self.data_format).astype(
            dtype
        )

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        h_axis, w_axis = image_utils.spatial_axes(self.data_format)
        if input_shape[h_axis] is not None and input_shape[w_axis] is not None:
            self.plan(input_shape[h_axis], input_shape[w_axis])  # refuses what has no exact form
        return image_utils.image_output_shape(
            input_shape, self.height, self.width, self.data_format
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "height": self.height,
            "width": self.width,
            "interpolation": self.interpolation,
            "crop_to_aspect_ratio": self.crop_to_aspect_ratio,
            "pad_to_aspect_ratio": self.pad_to_aspect_ratio,
            "fill_mode": self.fill_mode,
            "fill_value": self.fill_value,
            "antialias": self.antialias,
            "data_format": self.data_format,
        }


def _interpolation(layer: Layer, value: Any) -> str:
    name = value.lower() if isinstance(value, str) else value
    if name in INEXACT_INTERPOLATIONS:
        raise NotSupportedError(
            f"Resizing {layer.name}: {name} interpolation has no exact ONNX form; layerserve "
            "supports 'bilinear' and 'nearest'. " + received("interpolation", value)
        )
    if name not in EXACT_INTERPOLATIONS:
        raise ConfigError(
            "Invalid value for argument `interpolation`. Expected one of "
            f"{EXACT_INTERPOLATIONS + INEXACT_INTERPOLATIONS}. " + received("interpolation", value)
        )
    return name


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"Expected `{name}` to be a boolean. " + received(name, value))
    return bool(value)
