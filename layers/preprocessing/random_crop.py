"""RandomCrop: a random crop while training; at inference it depends on the Keras."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.layers.input_spec import InputSpec
from layerserve.layers.preprocessing import image_utils
from layerserve.layers.preprocessing.base_augmentation import AugmentationLayer
from layerserve.layers.preprocessing.center_crop import smart_resize
from layerserve.layers.tensor import Shape


class RandomCrop(AugmentationLayer):
    """Randomly crops images to ``height x width`` while training.

    At inference tf.keras resizes every image with ``smart_resize`` (the largest centred
    window of the target's aspect ratio, resized bilinearly to the target), whatever its
    size. Keras 3 returns the image unchanged (its declared output shape says
    ``height x width``, but the returned image keeps the input's size; layerserve
    declares the size it returns).

    Args:
        height, width: The crop size.
        seed, rng_type: Kept for the config (training only).
        data_format: Keras 3 only; tf.keras is channels_last.

    Input shape:
        4D images. tf.keras casts them to the float dtype; Keras 3 keeps integer images.

    Output shape:
        tf.keras: ``(N, height, width, C)`` (channels_last). Keras 3: the input shape.
    """

    keras3_keeps_integers = True

    def __init__(self, height: int, width: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.height = image_utils.positive_size(height, "height")
        self.width = image_utils.positive_size(width, "width")
        self.input_spec = InputSpec(ndim=4)

    @property
    def resizes(self) -> bool:
        """tf.keras resizes at inference; Keras 3 passes images through."""
        return self.keras_version < (3, 0, 0)

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        x = super().call(inputs, training=training)
        if not self.resizes:
            return x
        return smart_resize(x, self.height, self.width, self.data_format).astype(x.dtype)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if not self.resizes:
            return tuple(input_shape)
        return image_utils.image_output_shape(
            input_shape, self.height, self.width, self.data_format
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height": self.height, "width": self.width}
