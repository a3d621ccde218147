"""Dot: the dot product of the samples of two inputs along one axis of each."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, NotSupportedError, received
from layerserve.layers.merging import merging_shapes as ms
from layerserve.layers.merging.base_merge import Merge


def l2_normalize(x: np.ndarray, axis: int, floor: float) -> np.ndarray:
    """``x / max(||x||, floor)`` along ``axis``, in ``x``'s dtype."""
    norm = np.sqrt(np.sum(np.square(x), axis=axis, keepdims=True))
    return x / np.maximum(norm, np.asarray(floor, dtype=x.dtype))


def batch_dot(x: np.ndarray, y: np.ndarray, axes: tuple[int, int]) -> np.ndarray:
    """Per sample, ``tensordot`` of ``x[n]`` and ``y[n]`` over the two axes: ``x``'s
    other axes, then ``y``'s; a result of one axis gets a second axis of size 1."""
    rows = [np.tensordot(x[n], y[n], axes=(axes[0] - 1, axes[1] - 1)) for n in range(len(x))]
    shape = ms.dot_output_shape(x.shape, y.shape, axes)
    if not rows:
        return np.zeros(shape, dtype=np.result_type(x, y))
    return np.stack(rows).reshape(shape)


def _check_axes(axes: Any) -> int | tuple[int, int]:
    def is_int(value: Any) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if is_int(axes):
        return int(axes)
    if not isinstance(axes, (list, tuple)):
        raise ConfigError(
            "Invalid type for argument `axes`: it should be a list or an int. "
            + received("axes", axes)
        )
    if len(axes) != 2:
        raise ConfigError(
            "Invalid format for argument `axes`: it should contain two elements. "
            + received("axes", axes)
        )
    if not all(is_int(a) for a in axes):
        raise ConfigError(
            "Invalid format for argument `axes`: list elements should be integers. "
            + received("axes", axes)
        )
    return int(axes[0]), int(axes[1])


class Dot(Merge):
    """The dot product of the samples of two inputs along ``axes``.

    Args:
        axes: an integer (the same axis of both inputs; negative counts from the end of
            each) or two integers, one per input. The batch axis 0 cannot be used.
        normalize: L2-normalise each input along its axis first (the output is then the
            cosine similarity). The norm is floored at 1e-7 (Keras 3), 3.2e-4 (Keras
            3.0.0-3.0.4) or 1e-6 (Keras 2).
        **kwargs: standard layer keyword arguments.

    Input shape:
        A list of two tensors of rank >= 2 with the same size along their ``axes``.

    Output shape:
        ``x``'s shape without its axis, then ``y``'s without batch axis and its axis;
        ``(batch_size, 1)`` when that leaves only the batch axis. No output mask.
    """

    exact_inputs = 2

    def __init__(self, axes: Any, normalize: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axes = _check_axes(axes)
        if not isinstance(normalize, (bool, np.bool_)):
            raise ConfigError(
                "Expected `normalize` to be a boolean. " + received("normalize", normalize)
            )
        self.normalize = bool(normalize)

    def _what(self) -> str:
        return "A `Dot` layer"

    def resolved_axes(self, input_shape: Any) -> tuple[int, int]:
        shape1, shape2 = self._input_shapes(input_shape)
        axes = ms.dot_axes(self.axes, shape1, shape2)
        if self.keras_version < (2, 2, 5) and max(len(shape1), len(shape2)) > 3:
            # Keras before 2.2.5 batched K.batch_dot over every leading axis of rank > 3
            # inputs, which is not the contraction Keras computes since.
            raise NotSupportedError(
                f"Layer {self.name} (Dot): Keras {'.'.join(map(str, self.keras_version))} "
                "computed Dot on inputs of rank > 3 with the old K.batch_dot, which "
                "layerserve does not implement. " + received("input_shape", [shape1, shape2])
            )
        return axes

    def compute_output_shape(self, input_shape: Any) -> ms.Shape:
        shape1, shape2 = self._input_shapes(input_shape)
        return ms.dot_output_shape(shape1, shape2, self.resolved_axes(input_shape))

    @property
    def norm_floor(self) -> float:
        return ms.dot_norm_floor(self.keras_version)

    def call(self, inputs: Any, training: bool = False, mask: Any = None) -> np.ndarray:
        x, y = self._arrays(inputs)
        axes = self.resolved_axes([x.shape, y.shape])
        if self.normalize:
            if x.dtype.kind != "f":  # the norm of integers is a float, as in Keras
                x, y = x.astype(self.dtype), y.astype(self.dtype)
            x = l2_normalize(x, axes[0], self.norm_floor)
            y = l2_normalize(y, axes[1], self.norm_floor)
        return batch_dot(x, y, axes)

    def output_dtype(self, input_dtype: str) -> str:
        return self.dtype if self.normalize else super().output_dtype(input_dtype)

    def compute_mask(self, inputs: Any, mask: Any = None) -> None:
        return None

    def get_config(self) -> dict[str, Any]:
        axes = self.axes if isinstance(self.axes, int) else list(self.axes)
        return {**super().get_config(), "axes": axes, "normalize": self.normalize}
