"""Keras activation functions on NumPy arrays, with the formula of the Keras that wrote a file.

A name means what it meant in the Keras version in force (``keras_semantics``): the
version picks the formula (``hard_sigmoid`` is 0.2x+0.5 in Keras 2 and x/6+0.5 in Keras 3)
and the names that exist (``celu`` appears in Keras 3.7). Outside any ``keras_semantics``
block (models built in code) every name is available, with the Keras 2.2 formula where
versions differ. Every function computes in the input's float dtype with NumPy only.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from layerserve import _config, serialization
from layerserve.errors import (
    ConfigError,
    NotSupportedError,
    ShapeError,
    UnknownObjectError,
    received,
)
from layerserve.serialization import custom_objects, semantics_version, split_identifier

Activation = Callable[..., Any]
Version = tuple[int, int, int]

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_SQRT_2_OVER_PI = 0.7978845608028654
_INV_SQRT_2 = 0.7071067811865476
# The newest Keras whose sparsemax formula is known (keras-team/keras#23425 may fix it).
SPARSEMAX_KNOWN_UP_TO: Version = (3, 15, 1)


def _as_float(x: Any) -> Any:
    dtype = getattr(x, "dtype", None)
    if dtype is not None and np.issubdtype(dtype, np.floating):
        return x
    return np.asarray(x, dtype=_config.floatx())


def _zero(x: np.ndarray) -> np.ndarray:
    return np.zeros((), dtype=x.dtype)


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
    return SELU_SCALE * elu(x, SELU_ALPHA)


def celu(x: Any, alpha: float = 1.0) -> Any:
    """``max(x, 0) + alpha * expm1(min(x, 0) / alpha)`` (Keras 3.7+)."""
    x = _as_float(x)
    return np.maximum(x, 0.0) + alpha * np.expm1(np.minimum(x, 0.0) / alpha)


def _above(x: np.ndarray, threshold: float) -> np.ndarray:
    """``x`` where ``x > threshold``, else 0. Keras 3.15 selects; older Keras multiplies
    by the 0/1 comparison, which differs for infinite and NaN inputs."""
    if semantics_version() >= (3, 15, 0):
        return np.where(x > threshold, x, _zero(x))
    with np.errstate(invalid="ignore"):  # -inf * 0 is NaN, as in Keras
        return np.multiply(x, x > threshold)


def relu(
    x: Any,
    alpha: float = 0.0,
    max_value: float | None = None,
    threshold: float = 0.0,
    *,
    negative_slope: float | None = None,
) -> Any:
    """Keras rectifier (the algorithm of every Keras since 2.2.3, spec section 3);
    ``negative_slope`` is the Keras 3 name of ``alpha``."""
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
        positive = _above(x, threshold)
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
    """``x`` for ``x >= 0``, else ``negative_slope * x`` (tf.keras ``tf.nn.leaky_relu``,
    Keras 3)."""
    x = _as_float(x)
    return np.where(x >= 0, x, float(negative_slope) * x)


def silu(x: Any) -> Any:
    """``x * sigmoid(x)`` (``swish`` is the same function)."""
    x = _as_float(x)
    return x * sigmoid(x)


swish = silu


def hard_silu(x: Any) -> Any:
    """``x * relu6(x + 3) / 6`` (Keras 3; ``hard_swish`` is the same function)."""
    x = _as_float(x)
    return x * hard_sigmoid_v3(x)


hard_swish = hard_silu


def mish(x: Any) -> Any:
    """``x * tanh(softplus(x))``."""
    x = _as_float(x)
    return x * np.tanh(softplus(x))


def log_sigmoid(x: Any) -> Any:
    """``-softplus(-x)`` (Keras 3.7+)."""
    return -softplus(-_as_float(x))


def squareplus(x: Any, b: float = 4) -> Any:
    """``(x + sqrt(x^2 + b)) / 2`` (Keras 3.7+)."""
    x = _as_float(x)
    with np.errstate(over="ignore"):  # Keras overflows to inf the same way
        return (x + np.sqrt(np.square(x) + b)) / 2.0


def tanh_shrink(x: Any) -> Any:
    """``x - tanh(x)`` (Keras 3.7+)."""
    x = _as_float(x)
    return x - np.tanh(x)


def hard_tanh(x: Any) -> Any:
    """``clip(x, -1, 1)`` (Keras 3.7+)."""
    return np.clip(_as_float(x), -1.0, 1.0)


def soft_shrink(x: Any, threshold: float = 0.5) -> Any:
    """``x - t`` above ``t``, ``x + t`` below ``-t``, else 0 (Keras 3.7+)."""
    x = _as_float(x)
    inner = np.where(x < -threshold, x + threshold, _zero(x))
    return np.where(x > threshold, x - threshold, inner)


def hard_shrink(x: Any, threshold: float = 0.5) -> Any:
    """``x`` where ``|x| > t``, else 0 (Keras 3.7+)."""
    x = _as_float(x)
    return np.where(np.abs(x) > threshold, x, _zero(x))


def sparse_plus(x: Any) -> Any:
    """0 for ``x <= -1``, ``(x + 1)^2 / 4`` between, ``x`` for ``x >= 1`` (Keras 3.8+)."""
    x = _as_float(x)
    middle = np.where(x >= 1.0, x, np.square(x + 1.0) / 4.0)
    return np.where(x <= -1.0, _zero(x), middle)


def sparse_sigmoid(x: Any) -> Any:
    """``clip((x + 1) / 2, 0, 1)``, as Keras writes it: ``0.5 * clip(x + 1, 0, 2)``
    (Keras 3.10+)."""
    return 0.5 * np.clip(_as_float(x) + 1.0, 0.0, 2.0)


def threshold(x: Any, threshold: float, default_value: float) -> Any:
    """``x`` where ``x > threshold``, else ``default_value`` (Keras 3.8+; it cannot be
    used by name: it needs its two arguments)."""
    x = _as_float(x)
    return np.where(x > threshold, x, np.asarray(default_value, dtype=x.dtype))


def glu(x: Any, axis: int = -1) -> Any:
    """Gated linear unit: the halves ``a, b`` of ``axis`` give ``a * sigmoid(b)``
    (Keras 3.7+). The output has half the size along ``axis``."""
    x = _as_float(x)
    if x.ndim == 0 or x.shape[axis] % 2:
        raise ShapeError(
            "glu splits its axis into two halves, so the axis size must be even. "
            + received("input shape", tuple(np.shape(x)))
        )
    a, b = np.split(x, 2, axis=axis)
    return a * sigmoid(b)


def sparsemax(x: Any, axis: int = -1) -> Any:
    """Sparsemax as Keras 3.8 to 3.15.1 compute it (spec section 12): the threshold is
    ``(sum of the cumulative sums over the support - 1) / k``, not the published
    ``(S_k - 1) / k``, so the result differs whenever two or more inputs are in the
    support (keras-team/keras#23425)."""
    x = _as_float(x)
    ordered = -np.sort(-x, axis=axis)
    cumulative = np.cumsum(ordered, axis=axis)
    shape = [1] * x.ndim
    shape[axis] = -1
    ranks = np.arange(1, x.shape[axis] + 1, dtype=x.dtype).reshape(shape)
    support = ordered - (cumulative - 1.0) / ranks > 0
    k = np.sum(support, axis=axis, keepdims=True).astype(x.dtype)
    total = np.sum(np.where(support, cumulative, _zero(x)), axis=axis, keepdims=True)
    return np.maximum(x - (total - 1.0) / k, 0.0)


def erf(x: Any) -> np.ndarray:
    """The error function in float64 (W. J. Cody's approximations, about 1e-16)."""
    from layerserve.layers.activations.erf import erf as cody_erf  # numerics only; no cycle

    return cody_erf(x)


def gelu(x: Any, approximate: bool = False) -> Any:
    """Gaussian error linear unit; ``approximate`` uses the tanh form (by name: exact)."""
    x = _as_float(x)
    if approximate:
        inner = _SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)
        return 0.5 * x * (1.0 + np.tanh(inner))
    cdf = 0.5 * (1.0 + erf(x * _INV_SQRT_2))
    return (x * cdf.astype(x.dtype, copy=False)).astype(x.dtype, copy=False)


def keras_softmax(x: Any, axis: int | tuple[int, ...] | list[int], version: Version) -> np.ndarray:
    """``exp(x - max) / sum`` over ``axis`` as the Keras ``version`` computes it: Keras 2
    rejects rank 1, and multi-backend Keras 2 uses the last axis of rank-2 inputs whatever
    ``axis`` says; Keras 3 takes any rank."""
    x = _as_float(x)
    ndim = np.ndim(x)
    if version >= (3, 0, 0):
        if ndim == 0:
            raise ShapeError(
                "Cannot apply softmax to a scalar. " + received("input shape", np.shape(x))
            )
    elif ndim < 2:
        raise ShapeError(
            "Cannot apply softmax to a tensor that is 1D. "
            f"Received: input shape={tuple(np.shape(x))}"
        )
    elif ndim == 2 and version < (2, 4, 0):
        axis = -1
    axis = tuple(axis) if isinstance(axis, (list, tuple)) else axis
    e = np.exp(x - np.max(x, axis=axis, keepdims=True, initial=-np.inf))
    return e / np.sum(e, axis=axis, keepdims=True)


def softmax(x: Any, axis: int | tuple[int, ...] = -1) -> Any:
    """Softmax over ``axis``, with the rank rules of the Keras semantics in force (see
    :func:`keras_softmax`)."""
    return keras_softmax(x, axis, semantics_version())


def log_softmax(x: Any, axis: int | tuple[int, ...] = -1) -> Any:
    """``x - logsumexp(x, axis)``."""
    x = _as_float(x)
    axis = tuple(axis) if isinstance(axis, list) else axis
    shifted = x - np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    with np.errstate(divide="ignore"):  # an empty axis sums to 0; nothing is computed
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


# ---- names ------------------------------------------------------------------------

_FUNCTIONS: dict[str, Activation] = {
    fn.__name__: fn
    for fn in (
        softmax, elu, selu, softplus, softsign, relu, tanh, sigmoid, hard_sigmoid,
        exponential, linear, gelu, silu, relu6, leaky_relu, mish, log_softmax, hard_silu,
        celu, glu, hard_shrink, hard_tanh, log_sigmoid, soft_shrink, squareplus,
        tanh_shrink, sparse_plus, sparsemax, threshold, sparse_sigmoid,
    )
}  # fmt: skip
# Names that are another name's function, in the Keras lines that have them.
_ALIASES = {"swish": silu, "hard_swish": hard_silu, "softmax_v2": softmax}
# layerserve's own names for a formula a Keras name has in some versions only; they are
# what configs of layers loaded from such versions hold, and resolve in every version.
_INTERNAL: dict[str, Activation] = {"hard_sigmoid_v3": hard_sigmoid_v3}
_KERAS3_MEANING = {"hard_sigmoid": hard_sigmoid_v3}
_LINES = ("multi-backend Keras 2", "tf.keras", "Keras 3")
_ANY: Version = (0, 0, 0)
_K3_7, _K3_8 = (None, None, (3, 7, 0)), (None, None, (3, 8, 0))
# The first version of each Keras line (multi-backend Keras 2 below 2.4, tf.keras 2.4 up
# to 3, Keras 3) that resolves a name; None: the line has no such activation. tf.keras
# has the functions swish, gelu and mish, and from 2.6 the tf.nn aliases silu, relu6,
# leaky_relu (slope 0.2) and log_softmax; softmax_v2 is TF 2's tf.nn.softmax, mapped back.
_SINCE: dict[str, tuple[Version | None, Version | None, Version | None]] = {
    **dict.fromkeys(("softmax", "elu", "selu", "softplus", "softsign", "relu", "tanh",
                     "sigmoid", "hard_sigmoid", "linear"), (_ANY, _ANY, _ANY)),
    "exponential": ((2, 2, 3), _ANY, _ANY),
    **dict.fromkeys(("swish", "gelu"), (None, _ANY, _ANY)),
    **dict.fromkeys(("silu", "relu6", "leaky_relu", "log_softmax"), (None, (2, 6, 0), _ANY)),
    "mish": (None, (2, 13, 0), _ANY),
    "softmax_v2": (None, _ANY, None),
    **dict.fromkeys(("hard_silu", "hard_swish"), (None, None, (3, 0, 1))),
    **dict.fromkeys(("celu", "glu", "hard_shrink", "hard_tanh", "log_sigmoid",
                     "soft_shrink", "squareplus", "tanh_shrink"), _K3_7),
    **dict.fromkeys(("sparse_plus", "sparsemax", "threshold"), _K3_8),
    "sparse_sigmoid": (None, None, (3, 10, 0)),
}  # fmt: skip
_NAMES: dict[int, str] = {id(fn): name for name, fn in {**_FUNCTIONS, **_INTERNAL}.items()}
# Activation layers that tf.keras and Keras 3 store as a layer's activation when one is
# passed (``Dense(4, activation=LeakyReLU(0.1))``).
LAYER_ACTIVATIONS = ("Activation", "ELU", "LeakyReLU", "ReLU", "Softmax", "ThresholdedReLU")


def _line(version: Version) -> int:
    return 2 if version >= (3, 0, 0) else 1 if version >= (2, 4, 0) else 0


def explicit_semantics() -> bool:
    """Whether a ``keras_semantics`` block is in force (a file is being read), as opposed
    to the reference default that models built in code get."""
    return serialization.semantics_explicit()


_ANY_VERSION_NAMES: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "activation_names_of_any_version", default=False
)


@contextlib.contextmanager
def any_version_names() -> Iterator[None]:
    """Within the block every name resolves, as for models built in code: for documents
    layerserve wrote, whose configs may name any activation whatever version they state."""
    token = _ANY_VERSION_NAMES.set(True)
    try:
        yield
    finally:
        _ANY_VERSION_NAMES.reset(token)


def strict_names() -> bool:
    """Whether names must exist in the Keras version in force (a Keras file is read)."""
    return explicit_semantics() and not _ANY_VERSION_NAMES.get()


def available_names(version: Version | None = None) -> list[str]:
    """The activation names the Keras ``version`` resolves (None: every name)."""
    if version is None:
        return sorted(_SINCE)
    line = _line(version)
    return sorted(n for n, since in _SINCE.items() if _defined(since[line], version))


def _defined(since: Version | None, version: Version) -> bool:
    return since is not None and version >= since


def _where_defined(name: str) -> str:
    places = [
        f"{line} from {'.'.join(map(str, since))}" if since != _ANY else f"every {line}"
        for line, since in zip(_LINES, _SINCE[name], strict=True)
        if since is not None
    ]
    return " and ".join(places)


def _by_name(name: str) -> Activation:
    custom = custom_objects()
    if name in custom:
        return custom[name]
    if name in _INTERNAL:
        return _INTERNAL[name]
    strict = strict_names()
    version = semantics_version()
    line = _line(version)
    if name not in _SINCE:
        known = ", ".join(available_names(version if strict else None))
        raise UnknownObjectError(
            f"Unknown activation function: {name!r}. Expected one of: {known}."
        )
    if strict and not _defined(_SINCE[name][line], version):
        written = ".".join(map(str, version))
        raise UnknownObjectError(
            f"Unknown activation function: {name!r} does not exist in Keras {written} (it "
            f"exists in {_where_defined(name)}), so the file names a custom function: "
            f"pass it in custom_objects. Expected one of: {', '.join(available_names(version))}."
        )
    if name == "threshold":
        raise ConfigError(
            "The activation 'threshold' needs its `threshold` and `default_value` "
            "arguments: Keras calls an activation given by name with the input alone, "
            "which fails. " + received("activation", name)
        )
    if name == "sparsemax":
        _check_sparsemax(version, strict)
    if line == 2 and name in _KERAS3_MEANING:
        return _KERAS3_MEANING[name]
    return _ALIASES.get(name) or _FUNCTIONS[name]


def _check_sparsemax(version: Version, strict: bool) -> None:
    if strict and version > SPARSEMAX_KNOWN_UP_TO:
        raise NotSupportedError(
            "The sparsemax formula of Keras "
            f"{'.'.join(map(str, version))} is unknown to layerserve: Keras 3.8 to "
            "3.15.1 compute a threshold that differs from the published algorithm "
            "(keras-team/keras#23425), and newer releases may have fixed it."
        )
    warnings.warn(
        "sparsemax is computed with the threshold Keras 3.8-3.15.1 use, which differs "
        "from the published algorithm whenever two or more inputs are in the support "
        "(keras-team/keras#23425); layerserve gives Keras's numbers.",
        UserWarning,
        stacklevel=4,
    )


def _layer_activation(class_name: str, config: dict[str, Any]) -> Activation:
    """An activation layer stored as another layer's activation (tf.keras, Keras 3)."""
    from layerserve.layers import activations as activation_layers

    if _line(semantics_version()) == 0 and strict_names():
        raise UnknownObjectError(
            f"Unknown activation function: {class_name!r} (multi-backend Keras 2 cannot "
            "store a layer as an activation)."
        )
    return getattr(activation_layers, class_name).from_config(config)


def _from_dict(identifier: Mapping[str, Any]) -> Activation:
    config = identifier.get("config")
    if identifier.get("class_name") == "function" and isinstance(config, str):
        return get(config)
    name, layer_config = split_identifier(identifier, "activation")
    # Keras's own layers only: a registered custom class ("package>LeakyReLU") or one
    # from another module is the user's, found (or not) among the custom objects.
    module = str(identifier.get("module") or "keras")
    own = module.split(".")[0] in ("keras", "tf_keras") and identifier.get("registered_name") in (
        None,
        identifier.get("class_name"),
    )
    if own and name in LAYER_ACTIVATIONS and name not in custom_objects():
        return _layer_activation(name, layer_config)
    if own and name == "PReLU" and name not in custom_objects():
        raise NotSupportedError(
            "A PReLU layer used as another layer's activation is not supported: its "
            "`alpha` weight is stored among the owning layer's weights. "
            + received("activation", dict(identifier))
        )
    return get(name)


def get(identifier: Any) -> Activation:
    """Resolve None, a name, a serialized dict or a callable to an activation function."""
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        return _by_name(identifier)
    if isinstance(identifier, Mapping):
        return _from_dict(identifier)
    if callable(identifier):
        return identifier
    raise ConfigError(
        "Could not interpret activation function identifier: expected None, a name, "
        "a serialized dict or a callable. " + received("identifier", identifier)
    )


def serialize(activation: Activation | str) -> str | dict[str, Any]:
    """The name an activation is stored under in a config (``"relu"``, ``"linear"``,
    ...), or ``{"class_name", "config"}`` for an activation layer."""
    if isinstance(activation, str):
        activation = get(activation)
    from layerserve.layers.base import Layer

    if isinstance(activation, Layer):
        return {"class_name": type(activation).__name__, "config": activation.get_config()}
    name = _NAMES.get(id(activation))
    if name is not None:
        return name
    fn_name = getattr(activation, "__name__", None)
    if not isinstance(fn_name, str):
        raise ConfigError(
            "Expected an activation function with a __name__. " + received("activation", activation)
        )
    return fn_name
