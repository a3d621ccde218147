"""CenterCrop: the central ``height x width`` window; smaller images are upsized."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.layers.base import Layer
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.preprocessing import image_utils
from layerserve.layers.tensor import Shape


def center_crop_plan(
    height: int, width: int, target_h: int, target_w: int
) -> tuple[str, tuple[int, int, int, int]]:
    """``("crop", box)`` when the image is at least the target in both dimensions, else
    ``("resize", box)``: Keras's ``smart_resize`` crops the largest centred window of the
    target's aspect ratio and resizes it (bilinear) to the target. ``box`` is
    ``(top, left, height, width)``."""
    if height >= target_h and width >= target_w:
        top, left = image_utils.center_crop_start(height, width, target_h, target_w)
        return "crop", (top, left, target_h, target_w)
    return "resize", image_utils.aspect_crop_box(height, width, target_h, target_w)


def smart_resize(x: np.ndarray, height: int, width: int, data_format: str) -> np.ndarray:
    """Keras's ``smart_resize``: aspect-ratio crop, then half-pixel bilinear resize."""
    h_axis, w_axis = image_utils.spatial_axes(data_format)
    top, left, crop_h, crop_w = image_utils.aspect_crop_box(
        x.shape[h_axis], x.shape[w_axis], height, width
    )
    window = image_utils.crop(x, top, left, crop_h, crop_w, data_format)
    return image_utils.resize_bilinear(window, height, width, data_format)


class CenterCrop(Layer):
    """Crops the central portion of images to ``height x width``.

    An image smaller than the target in either dimension is instead resized as Keras's
    ``smart_resize`` does: the largest centred window with the target's aspect ratio is
    cropped, then resized (bilinear, half-pixel centres) to the target size.

    Args:
        height: Height of the output.
        width: Width of the output.
        data_format: Keras 3 only; None is the global image data format (tf.keras's
            layer is channels_last only).

    Input shape:
        4D ``(N, H, W, C)`` or ``(N, C, H, W)``; cast to the float dtype.

    Output shape:
        ``(N, height, width, C)`` or ``(N, C, height, width)``.
    """

    casts_inputs = True

    def __init__(
        self, height: int, width: int, data_format: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.height = image_utils.positive_size(height, "height")
        self.width = image_utils.positive_size(width, "width")
        self.data_format = image_utils.image_data_format(data_format, self.keras_version)
        self.input_spec = InputSpec(ndim=4)
        self.built = True

    def plan(self, input_shape: Shape) -> tuple[str, tuple[int, int, int, int]]:
        h_axis, w_axis = image_utils.spatial_axes(self.data_format)
        return center_crop_plan(input_shape[h_axis], input_shape[w_axis], self.height, self.width)

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        branch, box = self.plan(inputs.shape)
        if branch == "crop":
            return image_utils.crop(inputs, *box, self.data_format)
        return smart_resize(inputs, self.height, self.width, self.data_format)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return image_utils.image_output_shape(
            input_shape, self.height, self.width, self.data_format
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "height": self.height,
            "width": self.width,
            "data_format": self.data_format,
        }
