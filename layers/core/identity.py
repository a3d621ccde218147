"""Identity: returns its input unchanged (Keras 3; tf.keras 2.12 and later)."""

from __future__ import annotations

from typing import Any

from layerserve.layers.base import Layer


class Identity(Layer):
    """A placeholder layer that returns its input.

    Keras 3 passes masks through. tf.keras's Identity does not declare mask support, so
    tf.keras drops a mask that reaches it; layerserve does the same for every Keras 2
    version (multi-backend Keras 2.2 has no Identity layer).

    Args:
        **kwargs: Base layer arguments (``name``, ``dtype``, ``trainable``...).

    Input shape:
        Arbitrary.

    Output shape:
        Same as the input.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.supports_masking = self.keras_version >= (3, 0, 0)
        self.built = True

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        return mask if self.supports_masking else None
