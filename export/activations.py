"""Keras activations as ONNX nodes, each with the exact Keras formula.

A single ONNX op is used where one matches and the opset has it (HardSwish from 14, Mish
from 18, Gelu from 20); the others are composed from ops. onnxruntime implements Elu,
Selu, Celu, LeakyRelu, PRelu, HardSigmoid, HardSwish, Softplus, Softsign and Erf for
float32 only, so other float types get the same formulas from basic ops. A user-defined
activation function is traced like a Lambda; an activation layer is converted as a layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from layerserve import activations
from layerserve.errors import NotSupportedError, received
from layerserve.export.builder import GraphBuilder, Value, onnx_type

Emitter = Callable[[GraphBuilder, Value, str], str]


def constant(builder: GraphBuilder, value: Any, x: Value, name: str) -> str:
    """A scalar (or array) constant in ``x``'s dtype."""
    return builder.constant(np.asarray(value, dtype=x.dtype), name)


def _fused(x: Value) -> bool:
    return np.dtype(x.dtype) == np.float32


def _single(op_type: str, **attributes: Any) -> Emitter:
    def emit(builder: GraphBuilder, x: Value, name: str) -> str:
        return builder.op(op_type, [x.name], name, **attributes)

    return emit


def _x_times(gate: Emitter) -> Emitter:
    def emit(builder: GraphBuilder, x: Value, name: str) -> str:
        return builder.op("Mul", [x.name, gate(builder, x, f"{name}_gate")], name)

    return emit


def _on(value: Value, name: str) -> Value:
    """``value``'s shape and dtype under another name (an intermediate result)."""
    return Value(name, value.shape, value.dtype)


def emit_clip(builder: GraphBuilder, x: Value, name: str, low: float, high: float) -> str:
    low_name = constant(builder, low, x, f"{name}_min")
    return builder.op("Clip", [x.name, low_name, constant(builder, high, x, f"{name}_max")], name)


def emit_hard_sigmoid(
    builder: GraphBuilder, x: Value, name: str, alpha: float = 0.2, beta: float = 0.5
) -> str:
    """``clip(alpha * x + beta, 0, 1)``."""
    if _fused(x):
        return builder.op("HardSigmoid", [x.name], name, alpha=alpha, beta=beta)
    scaled = builder.op("Mul", [x.name, constant(builder, alpha, x, f"{name}_a")], f"{name}_ax")
    shifted = builder.op("Add", [scaled, constant(builder, beta, x, f"{name}_b")], f"{name}_axb")
    return emit_clip(builder, _on(x, shifted), name, 0.0, 1.0)


def emit_softplus(builder: GraphBuilder, x: Value, name: str) -> str:
    """``max(x, 0) + log(1 + exp(-|x|))`` (onnxruntime's Softplus is stable too)."""
    if _fused(x):
        return builder.op("Softplus", [x.name], name)
    magnitude = builder.op("Abs", [x.name], f"{name}_abs")
    decay = builder.op("Exp", [builder.op("Neg", [magnitude], f"{name}_neg")], f"{name}_exp")
    one_plus = builder.op("Add", [decay, constant(builder, 1.0, x, f"{name}_one")], f"{name}_1p")
    log = builder.op("Log", [one_plus], f"{name}_log")
    return builder.op("Add", [builder.op("Relu", [x.name], f"{name}_relu"), log], name)


def emit_elu(builder: GraphBuilder, x: Value, name: str, alpha: float = 1.0) -> str:
    """``x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``."""
    if _fused(x):
        return builder.op("Elu", [x.name], name, alpha=float(alpha))
    zero = constant(builder, 0.0, x, f"{name}_zero")
    negative = builder.op("Min", [x.name, zero], f"{name}_negative")
    exp = builder.op("Exp", [negative], f"{name}_exp")
    expm1 = builder.op("Sub", [exp, constant(builder, 1.0, x, f"{name}_one")], f"{name}_expm1")
    scaled = builder.op("Mul", [expm1, constant(builder, alpha, x, f"{name}_alpha")], f"{name}_neg")
    positive = builder.op("Greater", [x.name, zero], f"{name}_positive")
    return builder.op("Where", [positive, x.name, scaled], name)


def emit_leaky_relu(builder: GraphBuilder, x: Value, name: str, slope: float) -> str:
    """``x`` for ``x >= 0``, else ``slope * x`` (alpha stated: ONNX's default is 0.01)."""
    if _fused(x):
        return builder.op("LeakyRelu", [x.name], name, alpha=float(slope))
    zero = constant(builder, 0.0, x, f"{name}_zero")
    keep = builder.op("GreaterOrEqual", [x.name, zero], f"{name}_keep")
    scaled = builder.op("Mul", [x.name, constant(builder, slope, x, f"{name}_slope")], f"{name}_ax")
    return builder.op("Where", [keep, x.name, scaled], name)


def emit_above(builder: GraphBuilder, x: Value, name: str, threshold: float, select: bool) -> str:
    """``x`` where ``x > threshold``, else 0: selected (Keras >= 3.15) or multiplied by the
    0/1 comparison (older Keras; NaN and -inf then give NaN)."""
    above = builder.op(
        "Greater", [x.name, constant(builder, threshold, x, f"{name}_threshold")], f"{name}_above"
    )
    if select:
        return builder.op("Where", [above, x.name, constant(builder, 0.0, x, f"{name}_zero")], name)
    factor = builder.op("Cast", [above], f"{name}_factor", to=onnx_type(x.dtype))
    return builder.op("Mul", [x.name, factor], name)


def _selu(builder: GraphBuilder, x: Value, name: str) -> str:
    alpha, scale = activations.SELU_ALPHA, activations.SELU_SCALE
    if _fused(x):  # ONNX Selu's defaults are the float32 roundings; state them anyway
        return builder.op("Selu", [x.name], name, alpha=alpha, gamma=scale)
    elu = emit_elu(builder, x, f"{name}_elu", alpha)
    return builder.op("Mul", [elu, constant(builder, scale, x, f"{name}_scale")], name)


def _softsign(builder: GraphBuilder, x: Value, name: str) -> str:
    if _fused(x):
        return builder.op("Softsign", [x.name], name)
    magnitude = builder.op("Abs", [x.name], f"{name}_abs")
    one_plus = builder.op("Add", [magnitude, constant(builder, 1.0, x, f"{name}_one")], f"{name}_d")
    return builder.op("Div", [x.name, one_plus], name)


def _celu(builder: GraphBuilder, x: Value, name: str) -> str:
    if _fused(x):  # Celu-12 is max(0, x) + min(0, alpha * (exp(x / alpha) - 1)); alpha = 1
        return builder.op("Celu", [x.name], name, alpha=1.0)
    return emit_elu(builder, x, name, 1.0)  # the same function when alpha is 1


def _gelu(builder: GraphBuilder, x: Value, name: str) -> str:
    """``0.5 * x * (1 + erf(x / sqrt(2)))``, the exact form Keras uses by name."""
    if _fused(x) and builder.opset >= 20:
        return builder.op("Gelu", [x.name], name, approximate="none")
    scaled = builder.op(
        "Div", [x.name, constant(builder, np.sqrt(2.0), x, f"{name}_sqrt2")], f"{name}_scaled"
    )
    if _fused(x):
        erf = builder.op("Erf", [scaled], f"{name}_erf")
    else:  # onnxruntime's Erf is float32 only
        as_float = builder.op("Cast", [scaled], f"{name}_f32", to=onnx_type("float32"))
        erf32 = builder.op("Erf", [as_float], f"{name}_erf32")
        erf = builder.op("Cast", [erf32], f"{name}_erf", to=onnx_type(x.dtype))
    one_plus = builder.op(
        "Add", [erf, constant(builder, 1.0, x, f"{name}_one")], f"{name}_one_plus"
    )
    half_x = builder.op(
        "Mul", [x.name, constant(builder, 0.5, x, f"{name}_half")], f"{name}_half_x"
    )
    return builder.op("Mul", [half_x, one_plus], name)


def _mish(builder: GraphBuilder, x: Value, name: str) -> str:
    if _fused(x) and builder.opset >= 18:  # onnxruntime expands it to a float32 Softplus
        return builder.op("Mish", [x.name], name)
    softplus = emit_softplus(builder, x, f"{name}_softplus")
    return builder.op("Mul", [x.name, builder.op("Tanh", [softplus], f"{name}_tanh")], name)


def _hard_silu(builder: GraphBuilder, x: Value, name: str) -> str:
    if _fused(x) and builder.opset >= 14:  # x * max(0, min(1, x / 6 + 0.5))
        return builder.op("HardSwish", [x.name], name)
    gate = emit_hard_sigmoid(builder, x, f"{name}_gate", 1.0 / 6.0, 0.5)
    return builder.op("Mul", [x.name, gate], name)


def _log_sigmoid(builder: GraphBuilder, x: Value, name: str) -> str:
    negated = builder.op("Neg", [x.name], f"{name}_neg_x")
    softplus = emit_softplus(builder, _on(x, negated), f"{name}_softplus")
    return builder.op("Neg", [softplus], name)


def _squareplus(builder: GraphBuilder, x: Value, name: str) -> str:
    square = builder.op("Mul", [x.name, x.name], f"{name}_square")
    shifted = builder.op("Add", [square, constant(builder, 4.0, x, f"{name}_b")], f"{name}_x2b")
    total = builder.op(
        "Add", [x.name, builder.op("Sqrt", [shifted], f"{name}_sqrt")], f"{name}_sum"
    )
    return builder.op("Div", [total, constant(builder, 2.0, x, f"{name}_two")], name)


def _tanh_shrink(builder: GraphBuilder, x: Value, name: str) -> str:
    return builder.op("Sub", [x.name, builder.op("Tanh", [x.name], f"{name}_tanh")], name)


def _sparse_plus(builder: GraphBuilder, x: Value, name: str) -> str:
    one = constant(builder, 1.0, x, f"{name}_one")
    shifted = builder.op("Add", [x.name, one], f"{name}_x1")
    square = builder.op("Mul", [shifted, shifted], f"{name}_square")
    middle = builder.op("Div", [square, constant(builder, 4.0, x, f"{name}_four")], f"{name}_mid")
    above = builder.op("GreaterOrEqual", [x.name, one], f"{name}_above")
    upper = builder.op("Where", [above, x.name, middle], f"{name}_upper")
    low = builder.op(
        "LessOrEqual", [x.name, constant(builder, -1.0, x, f"{name}_m1")], f"{name}_low"
    )
    return builder.op("Where", [low, constant(builder, 0.0, x, f"{name}_zero"), upper], name)


def _sparse_sigmoid(builder: GraphBuilder, x: Value, name: str) -> str:
    shifted = builder.op("Add", [x.name, constant(builder, 1.0, x, f"{name}_one")], f"{name}_x1")
    clipped = emit_clip(builder, _on(x, shifted), f"{name}_clip", 0.0, 2.0)
    return builder.op("Mul", [clipped, constant(builder, 0.5, x, f"{name}_half")], name)


def _last_axis_size(x: Value, name: str, function: str) -> int:
    size = x.shape[-1] if x.shape else None
    if size is None:
        raise NotSupportedError(
            f"Layer {name!r}: the ONNX form of {function} needs the size of the last axis. "
            + received("input shape", x.shape)
        )
    return int(size)


def emit_glu(builder: GraphBuilder, x: Value, name: str) -> str:
    """``a * sigmoid(b)`` for the halves of the last axis. Only Activation states the
    halved output shape; other layers (Dense...) declare the full size, as Keras does,
    so ``emit_activation`` refuses glu for them."""
    half = _last_axis_size(x, name, "glu") // 2
    split = builder.int64s([half, half], f"{name}_split")
    a, b = builder.op("Split", [x.name, split], f"{name}_halves", outputs=2, axis=-1)
    return builder.op("Mul", [a, builder.op("Sigmoid", [b], f"{name}_gate")], name)


def _sparsemax(builder: GraphBuilder, x: Value, name: str) -> str:
    """Keras 3.8-3.15.1's formula (``layerserve.activations.sparsemax``): TopK sorts,
    CumSum accumulates, two sums over the last axis give ``k`` and the threshold."""
    size = _last_axis_size(x, name, "sparsemax")
    ordered, _ = builder.op(
        "TopK", [x.name, builder.int64s([size], f"{name}_k")], f"{name}_sorted", outputs=2, axis=-1
    )
    cumulative = builder.op(
        "CumSum", [ordered, builder.int64s(-1, f"{name}_axis")], f"{name}_cumsum"
    )
    minus_one = builder.op(
        "Sub", [cumulative, constant(builder, 1.0, x, f"{name}_one")], f"{name}_cm1"
    )
    ranks = constant(builder, np.arange(1, size + 1), x, f"{name}_ranks")
    bound = builder.op("Div", [minus_one, ranks], f"{name}_bound")
    gap = builder.op("Sub", [ordered, bound], f"{name}_gap")
    support = builder.op(
        "Greater", [gap, constant(builder, 0.0, x, f"{name}_zero")], f"{name}_support"
    )
    axes = builder.int64s([-1], f"{name}_axes")
    count = builder.op("Cast", [support], f"{name}_in_support", to=onnx_type(x.dtype))
    k = builder.op("ReduceSum", [count, axes], f"{name}_count", keepdims=1)
    kept = builder.op(
        "Where", [support, cumulative, constant(builder, 0.0, x, f"{name}_none")], f"{name}_kept"
    )
    total = builder.op("ReduceSum", [kept, axes], f"{name}_total", keepdims=1)
    total_m1 = builder.op("Sub", [total, constant(builder, 1.0, x, f"{name}_one_t")], f"{name}_tm1")
    tau = builder.op("Div", [total_m1, k], f"{name}_tau")
    shifted = builder.op("Sub", [x.name, tau], f"{name}_shifted")
    return builder.op("Relu", [shifted], name)


def _axis_op(op_type: str) -> Emitter:
    def emit(builder: GraphBuilder, x: Value, name: str) -> str:
        # by name the axis is -1 (Keras 2 refuses rank 1 before anything is exported)
        return builder.op(op_type, [x.name], name, axis=-1)

    return emit


EMITTERS: dict[str, Emitter] = {
    "relu": _single("Relu"),
    "sigmoid": _single("Sigmoid"),
    "tanh": _single("Tanh"),
    "exponential": _single("Exp"),
    "softplus": emit_softplus,
    "softsign": _softsign,
    "elu": emit_elu,
    "selu": _selu,
    "celu": _celu,
    "hard_sigmoid": emit_hard_sigmoid,
    "hard_sigmoid_v3": lambda b, x, n: emit_hard_sigmoid(b, x, n, 1.0 / 6.0, 0.5),
    "softmax": _axis_op("Softmax"),
    "log_softmax": _axis_op("LogSoftmax"),
    "relu6": lambda b, x, n: emit_clip(b, x, n, 0.0, 6.0),
    "leaky_relu": lambda b, x, n: emit_leaky_relu(b, x, n, 0.2),
    "gelu": _gelu,
    "silu": _x_times(_single("Sigmoid")),
    "hard_silu": _hard_silu,
    "mish": _mish,
    "log_sigmoid": _log_sigmoid,
    "squareplus": _squareplus,
    "tanh_shrink": _tanh_shrink,
    "hard_tanh": lambda b, x, n: emit_clip(b, x, n, -1.0, 1.0),
    "soft_shrink": _single("Shrink", lambd=0.5, bias=0.5),
    "hard_shrink": _single("Shrink", lambd=0.5, bias=0.0),
    "sparse_plus": _sparse_plus,
    "sparse_sigmoid": _sparse_sigmoid,
}
# Activations over the last axis (not element-wise): kept out of EMITTERS, which layout
# changing converters (convolutions) read as "may run in another layout"; softmax and
# log_softmax are in both for those converters' sake, which exclude them by name.
AXIS_EMITTERS: dict[str, Emitter] = {
    "softmax": EMITTERS["softmax"],
    "log_softmax": EMITTERS["log_softmax"],
    "sparsemax": _sparsemax,
}


def is_elementwise(function: Callable) -> bool:
    """Whether ``function`` (an activation) works element by element, so that it may be
    applied in any layout (before a Transpose)."""
    key = activations.serialize(function)
    if not isinstance(key, str) or getattr(activations, key, None) is not function:
        return False  # activation layers and user functions: apply them in place
    return key in EMITTERS and key not in AXIS_EMITTERS


def _emit_layer(builder: GraphBuilder, layer: Any, x: Value, name: str) -> str:
    """An activation layer used as another layer's activation, by its own converter."""
    from layerserve.export.registry import Conversion, find_converter

    conversion = Conversion(
        layer=layer,
        builder=builder,
        inputs=[x],
        masks=[None],
        output_shapes=[x.shape],
        output_dtypes=[x.dtype],
    )
    return find_converter(layer)(conversion).outputs[0]


def emit_activation(builder: GraphBuilder, function: Callable, x: Value, name: str) -> str:
    """The output name of ``function(x)``; ``x.name`` itself for ``linear``."""
    from layerserve.layers.base import Layer

    if isinstance(function, Layer):
        return _emit_layer(builder, function, x, name)
    key = activations.serialize(function)
    if key == "linear" or function is activations.linear:
        return x.name
    if function is activations.glu:
        raise NotSupportedError(
            f"Layer {name!r}: glu halves the last axis, but only an Activation layer "
            "declares the halved output shape (Keras reports the full size for other "
            "layers too); apply glu with a separate Activation('glu'). "
            + received("activation", key)
        )
    registered = getattr(activations, key, None) is function
    if registered and key in EMITTERS:
        return EMITTERS[key](builder, x, name)
    if registered and key in AXIS_EMITTERS:
        return AXIS_EMITTERS[key](builder, x, name)
    from layerserve.export.tracing import trace_function

    try:
        return trace_function(builder, function, [x], name)[0].name
    except NotSupportedError as exc:
        raise NotSupportedError(f"Layer {name!r}, argument activation={key!r}: {exc}") from exc
