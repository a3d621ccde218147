"""Shape operations Keras 3 builds masks with: expand_dims, squeeze, concatenate,
zeros_like, ones_like, cast."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, DTypeError, ShapeError, received
from layerserve.layers.base import normalize_dtype
from layerserve.layers.ops.base import KerasOp, normalize_axes
from layerserve.layers.tensor import Shape, flatten


class ExpandDimsOp(KerasOp):
    """``keras.ops.expand_dims(x, axis)``; ``axis`` an int or a list of ints."""

    def __init__(self, axis: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = axis

    def new_axes(self, rank: int) -> tuple[int, ...]:
        return normalize_axes(self.axis, rank + len(flatten(self.axis)), "ExpandDims")

    def compute(self, x: np.ndarray) -> np.ndarray:
        return np.expand_dims(x, self.new_axes(np.ndim(x)))

    def output_shape_of(self, x: Shape) -> Shape:
        new = self.new_axes(len(x))
        dims = iter(x)
        return tuple(1 if i in new else next(dims) for i in range(len(x) + len(new)))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


class SqueezeOp(KerasOp):
    """``keras.ops.squeeze(x, axis=None)``: removes the given (or every) size-1 axis."""

    def __init__(self, axis: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = axis

    def squeezed(self, shape: Shape) -> tuple[int, ...]:
        if self.axis is None:
            if any(d is None for d in shape):
                raise ShapeError(
                    "Squeeze without an axis needs every dimension known. "
                    + received("shape", shape)
                )
            return tuple(i for i, d in enumerate(shape) if d == 1)
        axes = normalize_axes(self.axis, len(shape), "Squeeze")
        for axis in axes:
            if shape[axis] not in (1, None):
                raise ShapeError(
                    f"Squeeze: expected size 1 on axis {axis}. " + received("shape", shape)
                )
        return axes

    def compute(self, x: np.ndarray) -> np.ndarray:
        return np.squeeze(x, self.squeezed(np.shape(x)))

    def output_shape_of(self, x: Shape) -> Shape:
        axes = self.squeezed(x)
        return tuple(d for i, d in enumerate(x) if i not in axes)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


def check_one_dtype(name: str, dtypes: list[str]) -> None:
    """Concatenated tensors of several dtypes: Keras promotes them by its own rules (int32
    with float32 gives float32, NumPy float64), which layerserve does not reproduce."""
    if len(set(dtypes)) > 1:
        raise DTypeError(
            f"Operation {name!r} (Concatenate): expected tensors of one dtype (Keras "
            "promotes mixed ones by rules of its own; cast them first). "
            + received("dtypes", dtypes)
        )


class ConcatenateOp(KerasOp):
    """``keras.ops.concatenate(xs, axis=0)``."""

    def __init__(self, axis: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ConfigError("Concatenate: expected an integer axis. " + received("axis", axis))
        self.axis = axis

    def compute(self, xs: list[np.ndarray]) -> np.ndarray:
        check_one_dtype(self.name, [str(np.asarray(x).dtype) for x in xs])
        return np.concatenate(xs, axis=self.axis)

    def output_shape_of(self, xs: list[Shape]) -> Shape:
        rank = len(xs[0])
        axis = normalize_axes(self.axis, rank, "Concatenate")[0]
        if any(len(s) != rank for s in xs):
            raise ShapeError("Concatenate: expected inputs of one rank. " + received("shapes", xs))
        sizes = [s[axis] for s in xs]
        out = list(xs[0])
        out[axis] = None if any(d is None for d in sizes) else sum(sizes)
        return tuple(out)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


class _Filled(KerasOp):
    """``zeros_like`` / ``ones_like``: the input's shape, filled, in ``dtype``."""

    value = 0

    def __init__(self, dtype: Any = None, **kwargs: Any) -> None:
        self.fill_dtype = normalize_dtype(dtype)
        super().__init__(**kwargs)

    def compute(self, x: np.ndarray) -> np.ndarray:
        return np.full(np.shape(x), self.value, dtype=self.fill_dtype or np.asarray(x).dtype)

    def output_shape_of(self, x: Shape) -> Shape:
        return tuple(x)

    def output_dtype(self, input_dtype: str) -> str:
        return self.fill_dtype or input_dtype

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dtype": self.fill_dtype}


class ZerosLikeOp(_Filled):
    """``keras.ops.zeros_like(x, dtype=None)``."""

    value = 0


class OnesLikeOp(_Filled):
    """``keras.ops.ones_like(x, dtype=None)``."""

    value = 1


def _dtype_of(inputs: Any) -> str:
    """The dtype of an operation's one input (an array, or a symbolic tensor)."""
    (x,) = flatten(inputs)
    return str(np.dtype(x.dtype))


class CastOp(KerasOp):
    """``keras.ops.cast(x, dtype)``. To the input's own dtype Keras returns the very
    tensor, its Keras mask with it (layers after it read that mask); else a new tensor,
    without one."""

    def __init__(self, dtype: Any, **kwargs: Any) -> None:
        self.cast_dtype = normalize_dtype(dtype)
        if self.cast_dtype is None:
            raise ConfigError("Cast: expected a dtype to cast to. " + received("dtype", dtype))
        super().__init__(**kwargs)

    def compute(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x).astype(self.cast_dtype)

    def passes_mask(self, input_dtype: str) -> bool:
        """Whether the output keeps the input's Keras mask (reference and export)."""
        return input_dtype == self.cast_dtype

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        return mask if self.passes_mask(_dtype_of(inputs)) else None

    def output_shape_of(self, x: Shape) -> Shape:
        return tuple(x)

    def output_dtype(self, input_dtype: str) -> str:
        return self.cast_dtype

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dtype": self.cast_dtype}


class ConvertToTensorOp(KerasOp):
    """``keras.ops.convert_to_tensor(x, dtype=None, sparse=None, ragged=None)`` on a
    symbolic tensor (Keras 3's attention layers convert their output mask with it).

    On a dense tensor it is the identity, or a cast to ``dtype`` when given (the Keras
    backends cast then: ``jnp.asarray(x, dtype)``, ``tf.cast``). ``sparse`` and ``ragged``
    only say whether sparse and ragged tensors stay so; ``None`` and ``False`` are the
    identity on dense tensors. ``True`` is refused: it keeps sparse or ragged tensors,
    which layerserve has none of (and the JAX backend rejects ``ragged=True``).
    """

    def __init__(
        self,
        dtype: Any = None,
        sparse: Any = None,
        ragged: Any = None,
        keeps_mask: bool = True,
        **kwargs: Any,
    ):
        for key, value in (("sparse", sparse), ("ragged", ragged)):
            if value is not None and value is not False:
                raise ConfigError(
                    f"ConvertToTensor: expected `{key}` to be null or false (layerserve "
                    "computes on dense tensors only). " + received(key, value)
                )
        self.convert_dtype = normalize_dtype(dtype)
        if not isinstance(keeps_mask, bool):
            raise ConfigError(
                "ConvertToTensor: expected `keeps_mask` to be true or false. "
                + received("keeps_mask", keeps_mask)
            )
        # False: an identity without the Keras mask (models/mask_removal.py), not a file's
        self.keeps_mask = keeps_mask
        super().__init__(**kwargs)

    def compute(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        return x if self.convert_dtype is None else x.astype(self.convert_dtype)

    def passes_mask(self, input_dtype: str) -> bool:
        """Whether the output keeps the input's Keras mask (reference and export)."""
        return self.keeps_mask and self.convert_dtype in (None, input_dtype)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        return mask if self.passes_mask(_dtype_of(inputs)) else None

    def output_shape_of(self, x: Shape) -> Shape:
        return tuple(x)

    def output_dtype(self, input_dtype: str) -> str:
        return self.convert_dtype or input_dtype

    def get_config(self) -> dict[str, Any]:
        # `sparse` and `ragged` are always null or false here: left out (the defaults).
        config = {**super().get_config(), "dtype": self.convert_dtype}
        if not self.keeps_mask:  # layerserve's own mask-removing identity, saved as such
            config["keeps_mask"] = False
        return config
