"""InputLayer and ``Input()``: the entry points of a model graph."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import _config
from layerserve.errors import ConfigError, NotSupportedError, received
from layerserve.layers.base import Layer, normalize_dtype, to_shape, unique_name
from layerserve.layers.tensor import KerasTensor, Node


class InputLayer(Layer):
    """Holds a model input's batch shape and dtype; has no weights and no computation."""

    supports_masking = True

    def __init__(
        self,
        input_shape: Any = None,
        batch_size: int | None = None,
        batch_input_shape: Any = None,
        dtype: Any = None,
        input_tensor: Any = None,
        sparse: bool = False,
        name: str | None = None,
        ragged: bool = False,
        optional: bool = False,
        batch_shape: Any = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("trainable", None)
        if batch_shape is not None and batch_input_shape is None:
            batch_input_shape = batch_shape
        if sparse:
            raise NotSupportedError(
                "Sparse inputs are not supported by layerserve: every input is a dense array. "
                "Feed the dense equivalent instead. " + received("sparse", sparse)
            )
        if ragged:
            raise NotSupportedError(
                "Ragged inputs are not supported by layerserve. " + received("ragged", ragged)
            )
        if input_shape is not None and batch_input_shape is not None:
            raise ConfigError(
                "Only provide the input_shape OR batch_input_shape argument to "
                "InputLayer, not both at the same time. "
                f"Received: input_shape={input_shape!r}, "
                f"batch_input_shape={batch_input_shape!r}"
            )
        if input_tensor is not None and batch_input_shape is None and input_shape is None:
            batch_input_shape = _tensor_shape(input_tensor)
            dtype = dtype or _tensor_dtype(input_tensor)
        if batch_input_shape is None:
            if input_shape is None:
                raise ConfigError(
                    "An Input layer should be passed either a "
                    "`batch_input_shape` or an `input_shape`."
                )
            batch_input_shape = (batch_size, *to_shape(input_shape, "input_shape"))
        super().__init__(
            name=name or unique_name("input"),
            trainable=False,
            dtype=normalize_dtype(dtype) or _config.floatx(),
            **kwargs,
        )
        self.batch_input_shape = to_shape(batch_input_shape, "batch_input_shape")
        self.sparse = False
        # Input(tensor=array) wraps a constant: the model feeds it itself.
        self.constant = None
        if input_tensor is not None and not isinstance(input_tensor, KerasTensor):
            self.constant = np.asarray(input_tensor, dtype=self.dtype)
        self.optional = bool(optional)
        self.built = True
        tensor = KerasTensor(
            self.batch_input_shape, self.dtype, name=self.name, history=(self, 0, 0)
        )
        self.inbound_nodes.append(Node(self, [], [tensor], []))

    @property
    def output(self) -> KerasTensor:
        return self.inbound_nodes[0].outputs[0]

    def get_config(self) -> dict[str, Any]:
        return {
            "batch_input_shape": list(self.batch_input_shape),
            "dtype": self.dtype,
            "sparse": self.sparse,
            "name": self.name,
        }


def Input(
    shape: Any = None,
    batch_shape: Any = None,
    name: str | None = None,  # noqa: N802
    dtype: Any = None,
    sparse: bool = False,
    tensor: Any = None,
    batch_size: int | None = None,
) -> KerasTensor:
    """A symbolic model input. ``shape`` excludes the batch axis; ``batch_shape`` wins."""
    if shape is None and batch_shape is None and tensor is None:
        raise ConfigError(
            "Please provide to Input either a `shape` or a `batch_shape` "
            "argument. Note that `shape` does not include the batch dimension."
        )
    layer = InputLayer(
        input_shape=shape if batch_shape is None else None,
        batch_size=batch_size,
        batch_input_shape=batch_shape,
        name=name,
        dtype=dtype,
        sparse=sparse,
        input_tensor=tensor,
    )
    return layer.output


def _tensor_shape(tensor: Any) -> tuple:
    if isinstance(tensor, KerasTensor):
        return tensor.shape
    return tuple(np.shape(tensor))


def _tensor_dtype(tensor: Any) -> str:
    if isinstance(tensor, KerasTensor):
        return tensor.dtype
    return np.asarray(tensor).dtype.name
