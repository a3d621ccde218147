"""The base of Keras 3 operations recorded in functional model configs.

Keras 3 writes every ``keras.ops`` call made while building a functional model into its
config, with ``module: keras.src.ops.<...>``: the ops that compute masks (``NotEqual``
and ``Any`` for ``Masking``, ``LogicalOr`` and ``Concatenate`` when layers merge masks)
and the ones users call. Each is a graph node like a layer: its config holds its own
options (``axis``, ``keepdims``, ``dtype``) and, as ``arguments``, its positional call
arguments with each tensor replaced by ``{"tensor": i}`` (the i-th inbound tensor) and
constants kept (``not_equal(x, 0.0)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, ShapeError, received
from layerserve.layers.base import Layer
from layerserve.layers.tensor import Shape, flatten


def fill(template: Any, values: list[Any]) -> Any:
    """``template`` with each ``{"tensor": i}`` replaced by ``values[i]``."""
    if isinstance(template, dict) and set(template) == {"tensor"}:
        return values[template["tensor"]]
    if isinstance(template, list):
        return [fill(item, values) for item in template]
    return template


def tensor_count(template: Any) -> int:
    if isinstance(template, dict) and set(template) == {"tensor"}:
        return 1
    if isinstance(template, list):
        return sum(tensor_count(item) for item in template)
    return 0


def normalize_axes(axis: Any, rank: int, op: str) -> tuple[int, ...]:
    values = list(range(rank)) if axis is None else flatten(axis)
    axes = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(f"{op}: expected integer axes. " + received("axis", axis))
        if not -rank <= value < rank:
            raise ShapeError(
                f"{op}: expected axes in [-{rank}, {rank}) for a rank-{rank} input. "
                + received("axis", axis)
            )
        axes.append(int(value) % rank)
    return tuple(sorted(set(axes)))


class KerasOp(Layer):
    """A Keras 3 operation in a model graph.

    Args:
        arguments: the positional arguments of the call (tensors as ``{"tensor": i}``);
            by default one tensor per input, in order.

    Subclasses implement ``compute(*args)`` on NumPy values (tensors as arrays,
    constants as given) and ``output_shape_of(*args)`` on shapes (constants as given).
    Operations carry no Keras mask.
    """

    is_keras_op = True
    autocasts = False  # operations take their arguments as they are; layers autocast

    def __init__(self, arguments: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if arguments is not None and not isinstance(arguments, list):
            raise ConfigError(
                f"{type(self).__name__}: expected `arguments` to be a list of the call's "
                "positional arguments. " + received("arguments", arguments)
            )
        self.arguments = arguments
        self.built = True

    def _template(self, count: int) -> list[Any]:
        if self.arguments is None:
            return [{"tensor": i} for i in range(count)]
        expected = tensor_count(self.arguments)
        if expected != count:
            raise ConfigError(
                f"Operation {self.name!r} ({type(self).__name__}) expects {expected} tensor "
                f"input(s). Received: {count}"
            )
        return self.arguments

    def _call_symbolic(self, inputs: Any, training: bool | None, mask: Any) -> Any:
        dtypes = [np.dtype(t.dtype) for t in flatten(inputs)]
        self.check_dtypes(*fill(self._template(len(dtypes)), dtypes))
        return super()._call_symbolic(inputs, training, mask)

    def check_dtypes(self, *args: Any) -> None:
        """Refuse, when the model is built, arguments of dtypes the operation cannot take
        (tensors as ``np.dtype``, constants as given)."""

    def call(self, inputs: Any, training: bool = False, mask: Any = None) -> np.ndarray:
        values = flatten(inputs)
        return np.asarray(self.compute(*fill(self._template(len(values)), values)))

    def compute_output_shape(self, input_shape: Any) -> Shape:
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        return self.output_shape_of(*fill(self._template(len(shapes)), shapes))

    def compute_mask(self, inputs: Any, mask: Any = None) -> None:
        return None

    def compute(self, *args: Any) -> np.ndarray:
        raise NotImplementedError

    def output_shape_of(self, *args: Any) -> Shape:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"name": self.name}
        if self.arguments is not None:
            config["arguments"] = self.arguments
        return config
