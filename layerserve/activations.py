"""Activation functions on NumPy arrays, with the Keras 2.2.4 formulas (spec section 3).

The Keras 3 additions (gelu, silu, mish, ...) are here too so that files written by
Keras 3 load. Every function computes in the input's float dtype and uses only NumPy
functions, ufuncs and operators.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from layerserve import _config
from layerserve.errors import ConfigError, ShapeError, received
from layerserve.serialization import is_keras3, lookup, split_identifier

Activation = Callable[..., Any]

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_SQRT_2_OVER_PI = 0.7978845608028654
_INV_SQRT_2 = 0.7071067811865476


def _as_float(x: Any) -> Any:
    dtype = getattr(x, "dtype", None)
    if dtype is not None and np.issubdtype(dtype, np.floating):
        return x
    return np.asarray(x, dtype=_config.floatx())


def linear(x: Any) -> Any:
    """Identity: ``y = x``."""
    return x


def exponential(x: Any) -> Any:
    """``e^x``."""
    return np.exp(_as_float(x))


def tanh(x: Any) -> Any:
    """Hyperbolic tangent."""
    return np.tanh(_as_float(x))


def sigmoid(x: Any) -> Any:
    """``1 / (1 + e^-x)``, evaluated without overflow."""
    x = _as_float(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def hard_sigmoid(x: Any) -> Any:
    """Keras 2 hard sigmoid: ``clip(0.2 x + 0.5, 0, 1)``."""
    return np.clip(0.2 * _as_float(x) + 0.5, 0.0, 1.0)


def hard_sigmoid_v3(x: Any) -> Any:
    """Keras 3 hard sigmoid: ``relu6(x + 3) / 6`` = ``clip(x / 6 + 0.5, 0, 1)``."""
    return relu6(_as_float(x) + 3.0) / 6.0


def softplus(x: Any) -> Any:
    """``log(1 + e^x)``, as ``max(x, 0) + log1p(e^-|x|)``."""
    x = _as_float(x)
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def softsign(x: Any) -> Any:
    """``x / (1 + |x|)``."""
    x = _as_float(x)
    return x / (1.0 + np.abs(x))


def elu(x: Any, alpha: float = 1.0) -> Any:
    """``x`` for ``x > 0``, else ``alpha * (e^x - 1)``."""
    x = _as_float(x)
    negative = np.expm1(np.minimum(x, 0.0))
    if float(alpha) != 1.0:
        negative = float(alpha) * negative
    return np.where(x > 0, x, negative)


def selu(x: Any) -> Any:
    """Scaled ELU with the fixed Klambauer et al. constants."""
    return _SELU_SCALE * elu(x, _SELU_ALPHA)


def relu(
    x: Any,
    alpha: float = 0.0,
    max_value: float | None = None,
    threshold: float = 0.0,
    *,
    negative_slope: float | None = None,
) -> Any:
    """Keras rectifier; ``negative_slope`` is the Keras 3 name of ``alpha``."""
    if negative_slope is not None:
        if alpha and float(alpha) != float(negative_slope):
            raise ConfigError(
                "Pass either `alpha` or `negative_slope` to relu, not both. "
                f"Received: alpha={alpha!r}, negative_slope={negative_slope!r}"
            )
        alpha = negative_slope
    x = _as_float(x)
    alpha = float(alpha)
    threshold = float(threshold)
    if alpha != 0.0 and max_value is None and threshold == 0.0:
        return np.where(x >= 0, x, alpha * x)
    clip_max = max_value is not None
    if threshold != 0.0:
        positive = x * (x > threshold)
    elif max_value == 6:
        positive = relu6(x)
        clip_max = False
    else:
        positive = np.maximum(x, 0.0)
    if clip_max:
        positive = np.clip(positive, 0.0, float(max_value))
    if alpha != 0.0:
        positive = positive - alpha * np.maximum(threshold - x, 0.0)
    return positive


def relu6(x: Any) -> Any:
    """``min(max(x, 0), 6)``."""
    return np.minimum(np.maximum(_as_float(x), 0.0), 6.0)


def leaky_relu(x: Any, negative_slope: float = 0.2) -> Any:
    """``x`` for ``x >= 0``, else ``negative_slope * x`` (Keras 3)."""
    x = _as_float(x)
    return np.where(x >= 0, x, float(negative_slope) * x)


def silu(x: Any) -> Any:
    """``x * sigmoid(x)`` (Keras 3; ``swish`` is the same function)."""
    x = _as_float(x)
    return x * sigmoid(x)


swish = silu


def hard_silu(x: Any) -> Any:
    """``x * relu6(x + 3) / 6`` (Keras 3; ``hard_swish`` is the same function)."""
    x = _as_float(x)
    return x * hard_sigmoid_v3(x)


hard_swish = hard_silu


def mish(x: Any) -> Any:
    """``x * tanh(softplus(x))`` (Keras 3)."""
    x = _as_float(x)
    return x * np.tanh(softplus(x))


# W. J. Cody's rational Chebyshev approximations (netlib specfun CALERF), accurate to
# about 1e-16 in float64.
_ERF_A = (
    3.16112374387056560e00,
    1.13864154151050156e02,
    3.77485237685302021e02,
    3.20937758913846947e03,
    1.85777706184603153e-1,
)
_ERF_B = (
    2.36012909523441209e01,
    2.44024637934444173e02,
    1.28261652607737228e03,
    2.84423683343917062e03,
)
_ERF_C = (
    5.64188496988670089e-1,
    8.88314979438837594e00,
    6.61191906371416295e01,
    2.98635138197400131e02,
    8.81952221241769090e02,
    1.71204761263407058e03,
    2.05107837782607147e03,
    1.23033935479799725e03,
    2.15311535474403846e-8,
)
_ERF_D = (
    1.57449261107098347e01,
    1.17693950891312499e02,
    5.37181101862009858e02,
    1.62138957456669019e03,
    3.29079923573345963e03,
    4.36261909014324716e03,
    3.43936767414372164e03,
    1.23033935480374942e03,
)
_ERF_P = (
    3.05326634961232344e-1,
    3.60344899949804439e-1,
    1.25781726111229246e-1,
    1.60837851487422766e-2,
    6.58749161529837803e-4,
    1.63153871373020978e-2,
)
_ERF_Q = (
    2.56852019228982242e00,
    1.87295284992346725e00,
    5.27905102951428412e-1,
    6.05183413124413191e-2,
    2.33520497626869185e-3,
)
_INV_SQRT_PI = 5.6418958354775628695e-1


def _erf_small(x: np.ndarray) -> np.ndarray:
    ysq = x * x
    num = _ERF_A[4] * ysq
    den = ysq
    for a, b in zip(_ERF_A[:3], _ERF_B[:3], strict=True):
        num = (num + a) * ysq
        den = (den + b) * ysq
    return x * (num + _ERF_A[3]) / (den + _ERF_B[3])


def _erfc_scaled_mid(y: np.ndarray) -> np.ndarray:
    num = _ERF_C[8] * y
    den = y
    for c, d in zip(_ERF_C[:7], _ERF_D[:7], strict=True):
        num = (num + c) * y
        den = (den + d) * y
    return (num + _ERF_C[7]) / (den + _ERF_D[7])


def _erfc_scaled_large(y: np.ndarray) -> np.ndarray:
    ysq = 1.0 / (y * y)
    num = _ERF_P[5] * ysq
    den = ysq
    for p, q in zip(_ERF_P[:4], _ERF_Q[:4], strict=True):
        num = (num + p) * ysq
        den = (den + q) * ysq
    return (_INV_SQRT_PI - ysq * (num + _ERF_P[4]) / (den + _ERF_Q[4])) / y


def erf(x: Any) -> np.ndarray:
    """The error function, computed in float64 with Cody's approximations."""
    x = np.asarray(x, dtype=np.float64)
    y = np.abs(x)
    small = _erf_small(np.where(y <= 0.46875, x, 0.0))
    y_big = np.clip(np.where(y > 0.46875, y, 1.0), 0.0, 27.0)
    scaled = np.where(y_big <= 4.0, _erfc_scaled_mid(y_big), _erfc_scaled_large(y_big))
    y_trunc = np.trunc(y_big * 16.0) / 16.0
    erfc = np.exp(-y_trunc * y_trunc) * np.exp(-(y_big - y_trunc) * (y_big + y_trunc)) * scaled
    big = np.sign(x) * ((0.5 - erfc) + 0.5)
    return np.where(y <= 0.46875, small, np.where(np.isnan(x), x, big))


def gelu(x: Any, approximate: bool = False) -> Any:
    """Gaussian error linear unit (Keras 3); ``approximate`` uses the tanh form."""
    x = _as_float(x)
    if approximate:
        inner = _SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)
        return 0.5 * x * (1.0 + np.tanh(inner))
    cdf = 0.5 * (1.0 + erf(x * _INV_SQRT_2))
    return (x * cdf.astype(x.dtype, copy=False)).astype(x.dtype, copy=False)


def _shifted(x: Any, axis: int | tuple[int, ...]) -> Any:
    return x - np.max(x, axis=axis, keepdims=True)


def _softmax_axis(x: Any, axis: int | tuple[int, ...] | list[int]) -> int | tuple[int, ...]:
    ndim = np.ndim(x)
    if is_keras3():
        if ndim == 0:
            raise ShapeError(
                "Cannot apply softmax to a scalar. " + received("input shape", np.shape(x))
            )
        return tuple(axis) if isinstance(axis, list) else axis
    if ndim < 2:
        raise ShapeError(
            "Cannot apply softmax to a tensor that is 1D. "
            f"Received: input shape={tuple(np.shape(x))}"
        )
    if ndim == 2:
        return -1
    return tuple(axis) if isinstance(axis, list) else axis


def softmax(x: Any, axis: int | tuple[int, ...] = -1) -> Any:
    """Softmax over ``axis``; Keras 2.2 semantics reject 1-D and use the last axis in 2-D."""
    x = _as_float(x)
    axis = _softmax_axis(x, axis)
    e = np.exp(_shifted(x, axis))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x: Any, axis: int | tuple[int, ...] = -1) -> Any:
    """``x - logsumexp(x, axis)`` (Keras 3)."""
    x = _as_float(x)
    axis = tuple(axis) if isinstance(axis, list) else axis
    shifted = _shifted(x, axis)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


_ACTIVATIONS: dict[str, Activation] = {
    "softmax": softmax,
    "elu": elu,
    "selu": selu,
    "softplus": softplus,
    "softsign": softsign,
    "relu": relu,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "hard_sigmoid": hard_sigmoid,
    "exponential": exponential,
    "linear": linear,
    "gelu": gelu,
    "silu": silu,
    "swish": swish,
    "relu6": relu6,
    "leaky_relu": leaky_relu,
    "mish": mish,
    "log_softmax": log_softmax,
    "hard_silu": hard_silu,
    "hard_swish": hard_swish,
    "hard_sigmoid_v3": hard_sigmoid_v3,
}

_ALIASES = {"swish", "hard_swish"}
_NAMES: dict[int, str] = {id(fn): name for name, fn in _ACTIVATIONS.items() if name not in _ALIASES}


def _registry() -> Mapping[str, Activation]:
    if is_keras3():
        return {**_ACTIVATIONS, "hard_sigmoid": hard_sigmoid_v3}
    return _ACTIVATIONS


def _from_dict(identifier: Mapping[str, Any]) -> Activation:
    config = identifier.get("config")
    if identifier.get("class_name") == "function" and isinstance(config, str):
        return get(config)
    name, _ = split_identifier(identifier, "activation")
    return get(name)


def get(identifier: Any) -> Activation:
    """Resolve None, a name, a serialized dict or a callable to an activation function."""
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        return lookup(identifier, _registry(), "activation function")
    if isinstance(identifier, Mapping):
        return _from_dict(identifier)
    if callable(identifier):
        return identifier
    raise ConfigError(
        "Could not interpret activation function identifier: expected None, a name, "
        "a serialized dict or a callable. " + received("identifier", identifier)
    )


def serialize(activation: Activation | str) -> str:
    """The name an activation is stored under in a config (``"relu"``, ``"linear"``, ...)."""
    if isinstance(activation, str):
        activation = get(activation)
    name = _NAMES.get(id(activation))
    if name is not None and _ACTIVATIONS.get(name) is activation:
        return name
    fn_name = getattr(activation, "__name__", None)
    if not isinstance(fn_name, str):
        raise ConfigError(
            "Expected an activation function with a __name__. " + received("activation", activation)
        )
    return fn_name
