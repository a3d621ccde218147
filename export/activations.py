"""Keras activations as ONNX nodes, each with the exact Keras formula.

A single ONNX op is used where one matches; the others are composed from ops.
A user-defined activation function is traced like a Lambda.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from layerserve import activations
from layerserve.errors import NotSupportedError
from layerserve.export.builder import GraphBuilder, Value

Emitter = Callable[[GraphBuilder, Value, str], str]


def _scalar(builder: GraphBuilder, value: float, x: Value, name: str) -> str:
    return builder.constant(np.asarray(value, dtype=x.dtype), name)


def _single(op_type: str, **attributes: Any) -> Emitter:
    def emit(builder: GraphBuilder, x: Value, name: str) -> str:
        return builder.op(op_type, [x.name], name, **attributes)

    return emit


def _x_times(inner: Emitter) -> Emitter:
    def emit(builder: GraphBuilder, x: Value, name: str) -> str:
        return builder.op("Mul", [x.name, inner(builder, x, f"{name}_gate")], name)

    return emit


def _softmax(op_type: str) -> Emitter:
    def emit(builder: GraphBuilder, x: Value, name: str) -> str:
        # layerserve's softmax on rank 1 raises (Keras 2.2); on rank 2 the axis is the
        # last; the activation functions use the default axis -1 at every rank.
        return builder.op(op_type, [x.name], name, axis=-1)

    return emit


def _relu6(builder: GraphBuilder, x: Value, name: str) -> str:
    return builder.op(
        "Clip",
        [x.name, _scalar(builder, 0.0, x, f"{name}_min"), _scalar(builder, 6.0, x, f"{name}_max")],
        name,
    )


def _gelu(builder: GraphBuilder, x: Value, name: str) -> str:
    # 0.5 * x * (1 + erf(x / sqrt(2))), the exact form Keras uses by default
    scaled = builder.op(
        "Div", [x.name, _scalar(builder, np.sqrt(2.0), x, f"{name}_sqrt2")], f"{name}_scaled"
    )
    erf = builder.op("Erf", [scaled], f"{name}_erf")
    one_plus = builder.op("Add", [erf, _scalar(builder, 1.0, x, f"{name}_one")], f"{name}_one_plus")
    half_x = builder.op("Mul", [x.name, _scalar(builder, 0.5, x, f"{name}_half")], f"{name}_half_x")
    return builder.op("Mul", [half_x, one_plus], name)


def _mish(builder: GraphBuilder, x: Value, name: str) -> str:
    softplus = builder.op("Softplus", [x.name], f"{name}_softplus")
    return builder.op("Mul", [x.name, builder.op("Tanh", [softplus], f"{name}_tanh")], name)


def _selu(builder: GraphBuilder, x: Value, name: str) -> str:
    # ONNX Selu's defaults are the float32 roundings of Keras's constants; state them.
    return builder.op(
        "Selu",
        [x.name],
        name,
        alpha=1.6732632423543772848170429916717,
        gamma=1.0507009873554804934193349852946,
    )


EMITTERS: dict[str, Emitter] = {
    "relu": _single("Relu"),
    "sigmoid": _single("Sigmoid"),
    "tanh": _single("Tanh"),
    "exponential": _single("Exp"),
    "softplus": _single("Softplus"),
    "softsign": _single("Softsign"),
    "elu": _single("Elu", alpha=1.0),
    "selu": _selu,
    "hard_sigmoid": _single("HardSigmoid", alpha=0.2, beta=0.5),
    "hard_sigmoid_v3": _single("HardSigmoid", alpha=1.0 / 6.0, beta=0.5),
    "softmax": _softmax("Softmax"),
    "log_softmax": _softmax("LogSoftmax"),
    "relu6": _relu6,
    "leaky_relu": _single("LeakyRelu", alpha=0.2),
    "gelu": _gelu,
    "silu": _x_times(_single("Sigmoid")),
    "swish": _x_times(_single("Sigmoid")),
    "hard_silu": _x_times(_single("HardSigmoid", alpha=1.0 / 6.0, beta=0.5)),
    "hard_swish": _x_times(_single("HardSigmoid", alpha=1.0 / 6.0, beta=0.5)),
    "mish": _mish,
}


def emit_activation(builder: GraphBuilder, function: Callable, x: Value, name: str) -> str:
    """The output name of ``function(x)``; ``x.name`` itself for ``linear``."""
    key = activations.serialize(function)
    if key == "linear" or function is activations.linear:
        return x.name
    registered = getattr(activations, key, None) is function
    if registered and key in EMITTERS:
        return EMITTERS[key](builder, x, name)
    from layerserve.export.tracing import trace_function

    try:
        return trace_function(builder, function, [x], name)[0].name
    except NotSupportedError as exc:
        raise NotSupportedError(f"Layer {name!r}, argument activation={key!r}: {exc}") from exc
