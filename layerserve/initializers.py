"""Weight initializers with the Keras 2.2.4 formulas (spec section 4).

Random initializers draw from ``np.random.default_rng(seed)``: a given seed gives the same
values on every call, ``seed=None`` fresh values. NumPy's global RNG is never touched.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from layerserve import _config
from layerserve.errors import ConfigError, received
from layerserve.serialization import is_keras3, lookup, split_identifier
from layerserve.serialization import serialize as _serialize_object

Shape = Sequence[int]

_TRUNCATED_STD = 0.87962566103423978
_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("normal", "truncated_normal", "untruncated_normal", "uniform")


def _shape(shape: Shape | int) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ConfigError(
            "Expected a fully defined shape of non-negative integers. " + received("shape", shape)
        ) from None
    if any(d < 0 for d in dims):
        raise ConfigError(
            "Expected a fully defined shape of non-negative integers. " + received("shape", shape)
        )
    return dims


def _dtype(dtype: Any) -> np.dtype:
    return np.dtype(_config.floatx() if dtype is None else dtype)


def _rng(seed: int | None) -> np.random.Generator:
    return np.random.default_rng(seed)


def _truncated_standard_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    z = rng.standard_normal(shape)
    outside = np.abs(z) > 2.0
    while outside.any():
        z[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(z) > 2.0
    return z


def compute_fans(
    shape: Shape,
    input_axes: Sequence[int] | None = None,
    output_axes: Sequence[int] | None = None,
) -> tuple[float, float]:
    """``(fan_in, fan_out)`` by the Keras 2.2 rule (rank 1 or > 5: ``sqrt(prod(shape))``)."""
    shape = tuple(shape)
    if input_axes is not None and output_axes is not None:
        return (
            float(math.prod(shape[a] for a in input_axes)),
            float(math.prod(shape[a] for a in output_axes)),
        )
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    if len(shape) in (3, 4, 5):
        receptive_field = math.prod(shape[:-2])
        return float(shape[-2] * receptive_field), float(shape[-1] * receptive_field)
    side = math.sqrt(math.prod(shape))
    return side, side


class Initializer:
    """Base class: ``init(shape, dtype=None) -> np.ndarray``."""

    def __call__(self, shape: Shape, dtype: Any = None) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Initializer:
        config = dict(config)
        config.pop("dtype", None)
        return cls(**config)


class Zeros(Initializer):
    """All zeros."""

    def __call__(self, shape: Shape, dtype: Any = None) -> np.ndarray:
        return np.zeros(_shape(shape), dtype=_dtype(dtype))


class Ones(Initializer):
    """All ones."""

    def __call__(self, shape: Shape, dtype: Any = None) -> np.ndarray:
        return np.ones(_shape(shape), dtype=_dtype(dtype))


class Constant(Initializer):
    """Every element equal to ``value`` (a scalar, or an array of the full size)."""

    def __init__(self, value: Any = 0) -> None:
        self.value = value

    def __call__(self, shape: Shape, dtype: Any = None) -> np.ndarray:
        dims = _shape(shape)
        value = np.asarray(self.value, dtype=_dtype(dtype))
        if value.size == math.prod(dims) and value.ndim > 0:
            return value.reshape(dims).copy()
        try:
            return np.broadcast_to(value, dims).copy()
        except ValueError:
            raise ConfigError(
                f"Constant initializer value of shape {value.shape} does not fit the "
                f"requested shape {dims}. " + received("value", self.value)
            ) from None

    def get_config(self) -> dict[str, Any]:
        return {"value": self.value}


class RandomNormal(Initializer):
    """Normal samples with the given mean and standard deviation."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> None:
        self.mean = mean
        self.stddev = stddev
        self.seed = seed

    def __call__(self, shape: Shape, dtype: Any = None) -> np.ndarray:
        values = _rng(self.seed).normal(self.mean, self.stddev, _shape(shape))
        return values.astype(_dtype(dtype))

    def get_config(self) -> dict[str, Any]:
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class RandomUniform(Initializer):
    """Uniform samples in ``[minval, maxval)``."""

    def __init__(
        self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None
    ) -> None:
        self.minval = minval
        self.maxval = maxval
        self.seed = seed

    def __call__(self, shape: Shape, dtype: Any = None) -> np.ndarray:
        values = _rng(self.seed).uniform(self.minval, self.maxval, _shape(shape))
        return values.astype(_dtype(dtype))

    def get_config(self) -> dict[str, Any]:
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class TruncatedNormal(Initializer):
    """Normal samples, redrawn when more than two standard deviations from the mean."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> None:
        self.mean = mean
        self.stddev = stddev
        self.seed = seed

    def __call__(self, shape: Shape, dtype: Any = None) -> np.ndarray:
        z = _truncated_standard_normal(_rng(self.seed), _shape(shape))
        return (self.mean + self.stddev * z).astype(_dtype(dtype))

    def get_config(self) -> dict[str, Any]:
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


def _check_variance_scaling(scale: float, mode: str, distribution: str) -> None:
    if not isinstance(scale, numbers.Real) or isinstance(scale, bool) or not scale > 0:
        raise ConfigError("Expected `scale` to be a positive float. " + received("scale", scale))
    if not isinstance(mode, str) or mode.lower() not in _MODES:
        raise ConfigError(
            f"Expected `mode` to be one of {', '.join(_MODES)}. " + received("mode", mode)
        )
    if not isinstance(distribution, str) or distribution.lower() not in _DISTRIBUTIONS:
        raise ConfigError(
            f"Expected `distribution` to be one of {', '.join(_DISTRIBUTIONS)}. "
            + received("distribution", distribution)
        )


class VarianceScaling(Initializer):
    """Samples scaled to the weight's fan-in, fan-out or their average."""

    def __init__(
        self,
        scale: float = 1.0,
        mode: str = "fan_in",
        distribution: str = "normal",
        seed: int | None = None,
        input_axes: Sequence[int] | None = None,
        output_axes: Sequence[int] | None = None,
    ) -> None:
        _check_variance_scaling(scale, mode, distribution)
        self.scale = scale
        self.mode = mode.lower()
        self.distribution = distribution.lower()
        self.seed = seed
        self.input_axes = input_axes
        self.output_axes = output_axes

    def _variance(self, shape: tuple[int, ...]) -> float:
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}
        return float(self.scale) / max(1.0, n[self.mode])

    def __call__(self, shape: Shape, dtype: Any = None) -> np.ndarray:
        dims = _shape(shape)
        variance = self._variance(dims)
        rng = _rng(self.seed)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            values = rng.uniform(-limit, limit, dims)
        elif self.distribution == "untruncated_normal":
            values = math.sqrt(variance) * rng.standard_normal(dims)
        else:
            stddev = math.sqrt(variance) / _TRUNCATED_STD
            values = stddev * _truncated_standard_normal(rng, dims)
        return values.astype(_dtype(dtype))

    def _axes_config(self) -> dict[str, Any]:
        if self.input_axes is None and self.output_axes is None:
            return {}
        return {"input_axes": self.input_axes, "output_axes": self.output_axes}

    def get_config(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "mode": self.mode,
            "distribution": self.distribution,
            "seed": self.seed,
            **self._axes_config(),
        }


class _NamedVarianceScaling(VarianceScaling):
    """A Keras 3 class for one fixed VarianceScaling setting; its config is the seed."""

    _SETTING: tuple[float, str, str] = (1.0, "fan_in", "normal")

    def __init__(
        self,
        seed: int | None = None,
        input_axes: Sequence[int] | None = None,
        output_axes: Sequence[int] | None = None,
    ) -> None:
        scale, mode, distribution = self._SETTING
        super().__init__(scale, mode, distribution, seed, input_axes, output_axes)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed, **self._axes_config()}


class GlorotUniform(_NamedVarianceScaling):
    """Uniform with limit ``sqrt(6 / (fan_in + fan_out))``."""

    _SETTING = (1.0, "fan_avg", "uniform")


class GlorotNormal(_NamedVarianceScaling):
    """Truncated normal with std ``sqrt(2 / (fan_in + fan_out))``."""

    _SETTING = (1.0, "fan_avg", "normal")


class HeUniform(_NamedVarianceScaling):
    """Uniform with limit ``sqrt(6 / fan_in)``."""

    _SETTING = (2.0, "fan_in", "uniform")


class HeNormal(_NamedVarianceScaling):
    """Truncated normal with std ``sqrt(2 / fan_in)``."""

    _SETTING = (2.0, "fan_in", "normal")


class LecunUniform(_NamedVarianceScaling):
    """Uniform with limit ``sqrt(3 / fan_in)``."""

    _SETTING = (1.0, "fan_in", "uniform")


class LecunNormal(_NamedVarianceScaling):
    """Truncated normal with std ``sqrt(1 / fan_in)``."""

    _SETTING = (1.0, "fan_in", "normal")


def glorot_uniform(seed: int | None = None) -> VarianceScaling:
    """Keras 2 factory: ``VarianceScaling(1., 'fan_avg', 'uniform')``."""
    return VarianceScaling(1.0, "fan_avg", "uniform", seed)


def glorot_normal(seed: int | None = None) -> VarianceScaling:
    """Keras 2 factory: ``VarianceScaling(1., 'fan_avg', 'normal')``."""
    return VarianceScaling(1.0, "fan_avg", "normal", seed)


def he_uniform(seed: int | None = None) -> VarianceScaling:
    """Keras 2 factory: ``VarianceScaling(2., 'fan_in', 'uniform')``."""
    return VarianceScaling(2.0, "fan_in", "uniform", seed)


def he_normal(seed: int | None = None) -> VarianceScaling:
    """Keras 2 factory: ``VarianceScaling(2., 'fan_in', 'normal')``."""
    return VarianceScaling(2.0, "fan_in", "normal", seed)


def lecun_uniform(seed: int | None = None) -> VarianceScaling:
    """Keras 2 factory: ``VarianceScaling(1., 'fan_in', 'uniform')``."""
    return VarianceScaling(1.0, "fan_in", "uniform", seed)


def lecun_normal(seed: int | None = None) -> VarianceScaling:
    """Keras 2 factory: ``VarianceScaling(1., 'fan_in', 'normal')``."""
    return VarianceScaling(1.0, "fan_in", "normal", seed)


class Orthogonal(Initializer):
    """An orthogonal matrix from the SVD of a normal matrix, reshaped and scaled by ``gain``."""

    def __init__(self, gain: float = 1.0, seed: int | None = None) -> None:
        self.gain = gain
        self.seed = seed

    def __call__(self, shape: Shape, dtype: Any = None) -> np.ndarray:
        dims = _shape(shape)
        if len(dims) < 2:
            raise ConfigError(
                "The Orthogonal initializer needs a shape of rank 2 or more. "
                + received("shape", dims)
            )
        flat_shape = (math.prod(dims[:-1]), dims[-1])
        a = _rng(self.seed).standard_normal(flat_shape)
        u, _, vt = np.linalg.svd(a, full_matrices=False)
        q = u if u.shape == flat_shape else vt
        return (float(self.gain) * q.reshape(dims)).astype(_dtype(dtype))

    def get_config(self) -> dict[str, Any]:
        return {"gain": self.gain, "seed": self.seed}


class Identity(Initializer):
    """``gain`` times an identity matrix; 2-D shapes only."""

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = gain

    def __call__(self, shape: Shape, dtype: Any = None) -> np.ndarray:
        dims = _shape(shape)
        if len(dims) != 2:
            raise ConfigError(
                "The Identity initializer can only be used for 2D matrices. "
                + received("shape", dims)
            )
        matrix = np.eye(*dims) if is_keras3() else _tiled_identity(dims)
        return (float(self.gain) * matrix).astype(_dtype(dtype))

    def get_config(self) -> dict[str, Any]:
        return {"gain": self.gain}


def _tiled_identity(dims: tuple[int, int]) -> np.ndarray:
    rows, cols = dims
    short, long = min(dims), max(dims)
    if short == 0 or long % short != 0:
        raise ConfigError(
            "The Identity initializer needs the long side of the matrix to be a multiple "
            "of the short side. " + received("shape", dims)
        )
    block = np.identity(short)
    if rows == cols:
        return block
    return np.concatenate([block] * (long // short), axis=0 if rows > cols else 1)


_CLASSES: dict[str, Any] = {
    cls.__name__: cls
    for cls in (
        Zeros,
        Ones,
        Constant,
        RandomNormal,
        RandomUniform,
        TruncatedNormal,
        VarianceScaling,
        Orthogonal,
        Identity,
        GlorotUniform,
        GlorotNormal,
        HeUniform,
        HeNormal,
        LecunUniform,
        LecunNormal,
    )
}
_ALIASES: dict[str, Any] = {
    "zero": Zeros,
    "zeros": Zeros,
    "one": Ones,
    "ones": Ones,
    "constant": Constant,
    "uniform": RandomUniform,
    "random_uniform": RandomUniform,
    "normal": RandomNormal,
    "random_normal": RandomNormal,
    "truncated_normal": TruncatedNormal,
    "variance_scaling": VarianceScaling,
    "identity": Identity,
    "IdentityInitializer": Identity,
    "orthogonal": Orthogonal,
    "OrthogonalInitializer": Orthogonal,
}
_KERAS2_FACTORIES: dict[str, Callable[..., VarianceScaling]] = {
    fn.__name__: fn
    for fn in (glorot_uniform, glorot_normal, he_uniform, he_normal, lecun_uniform, lecun_normal)
}
_KERAS3_NAMED: dict[str, type[VarianceScaling]] = {
    "glorot_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal,
    "he_uniform": HeUniform,
    "he_normal": HeNormal,
    "lecun_uniform": LecunUniform,
    "lecun_normal": LecunNormal,
}


def _registry() -> dict[str, Any]:
    named = _KERAS3_NAMED if is_keras3() else _KERAS2_FACTORIES
    return {**_CLASSES, **_ALIASES, **named}


def _build(target: Any, config: Mapping[str, Any]) -> Any:
    if isinstance(target, type) and hasattr(target, "from_config"):
        return target.from_config(config)
    kwargs = {k: v for k, v in config.items() if k != "dtype"}
    if isinstance(target, type) or target in _KERAS2_FACTORIES.values() or kwargs:
        return target(**kwargs)
    return target


def get(identifier: Any) -> Any:
    """Resolve a name, a serialized dict, an instance or a callable to an initializer."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        return _build(lookup(identifier, _registry(), "initializer"), {})
    if isinstance(identifier, Mapping):
        name, config = split_identifier(identifier, "initializer")
        return _build(lookup(name, _registry(), "initializer"), config)
    if callable(identifier):
        return identifier
    raise ConfigError(
        "Could not interpret initializer identifier: expected a name, a serialized dict, "
        "an Initializer or a callable. " + received("identifier", identifier)
    )


def serialize(initializer: Any) -> dict[str, Any] | str | None:
    """``{"class_name", "config"}`` for an initializer object; a plain function's name."""
    if initializer is None or hasattr(initializer, "get_config"):
        return _serialize_object(initializer)
    name = getattr(initializer, "__name__", None)
    if not isinstance(name, str):
        raise ConfigError(
            "Expected an initializer with get_config or a named function. "
            + received("initializer", initializer)
        )
    return name
