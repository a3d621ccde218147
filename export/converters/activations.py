"""The activation layers as ONNX nodes; the formulas are those of ``export.activations``.

Masks pass through every one of them (the registry's default); only Softmax reads it.
"""

from __future__ import annotations

import numpy as np

from layerserve import activations
from layerserve.export.activations import (
    constant,
    emit_above,
    emit_activation,
    emit_clip,
    emit_elu,
    emit_glu,
    emit_leaky_relu,
)
from layerserve.export.builder import GraphBuilder, Value, onnx_type
from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers.activations.activation import Activation
from layerserve.layers.activations.elu import ELU
from layerserve.layers.activations.leaky_relu import LeakyReLU
from layerserve.layers.activations.prelu import PReLU
from layerserve.layers.activations.relu import ReLU
from layerserve.layers.activations.softmax import (
    Softmax,
    large_negative,
    masked_logits_rule,
    masked_output_rule,
)
from layerserve.layers.activations.thresholded_relu import ThresholdedReLU


@converter(Activation)
def convert_activation(conversion: Conversion) -> Converted:
    layer = conversion.layer
    x = conversion.inputs[0]
    if layer.activation is activations.glu:  # the one activation that changes the shape
        return Converted([emit_glu(conversion.builder, x, layer.name)])
    return Converted([emit_activation(conversion.builder, layer.activation, x, layer.name)])


@converter(ReLU)
def convert_relu(conversion: Conversion) -> Converted:
    """``Relu``; ``Clip`` with a ceiling; ``LeakyRelu`` for a lone slope; otherwise the
    Keras algorithm step by step (positive part, ceiling, minus the slope part), so that
    ``f(threshold) = 0`` and a negative threshold under a ceiling behave as in Keras."""
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    name, slope, ceiling, threshold = (
        layer.name,
        layer.negative_slope,
        layer.max_value,
        layer.threshold,
    )
    if slope and ceiling is None and threshold == 0:
        return Converted([emit_leaky_relu(builder, x, name, slope)])
    positive_name = f"{name}_positive" if slope else name
    if threshold != 0:
        select = layer.keras_version >= (3, 15, 0)  # where() from 3.15, a product before
        above_name = positive_name if ceiling is None else f"{name}_above"
        positive = emit_above(builder, x, above_name, threshold, select)
        if ceiling is not None:
            positive = emit_clip(builder, _like(x, positive), positive_name, 0.0, ceiling)
    elif ceiling is not None:
        positive = emit_clip(builder, x, positive_name, 0.0, ceiling)
    else:
        positive = builder.op("Relu", [x.name], positive_name)
    if not slope:
        return Converted([positive])
    # minus slope * relu(threshold - x)
    t = constant(builder, threshold, x, f"{name}_threshold_value")
    below = builder.op(
        "Relu", [builder.op("Sub", [t, x.name], f"{name}_t_minus_x")], f"{name}_below"
    )
    factor = constant(builder, slope, x, f"{name}_slope")
    scaled = builder.op("Mul", [below, factor], f"{name}_slope_part")
    return Converted([builder.op("Sub", [positive, scaled], name)])


def _like(x: Value, name: str) -> Value:
    return Value(name, x.shape, x.dtype)


@converter(LeakyReLU)
def convert_leaky_relu(conversion: Conversion) -> Converted:
    layer = conversion.layer
    x = conversion.inputs[0]
    return Converted([emit_leaky_relu(conversion.builder, x, layer.name, layer.negative_slope)])


@converter(ELU)
def convert_elu(conversion: Conversion) -> Converted:
    layer = conversion.layer
    return Converted([emit_elu(conversion.builder, conversion.inputs[0], layer.name, layer.alpha)])


@converter(PReLU)
def convert_prelu(conversion: Conversion) -> Converted:
    """``PRelu(x, alpha)``: alpha (``input_shape[1:]``, 1 on shared axes) broadcasts
    against the input from the right, as the op's unidirectional broadcasting wants."""
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    alpha = np.asarray(layer.alpha.value, dtype=x.dtype)
    if np.dtype(x.dtype) == np.float32:
        slope = builder.constant(alpha, f"{layer.name}_alpha")
        return Converted([builder.op("PRelu", [x.name, slope], layer.name)])
    # relu(x) - alpha * relu(-x), as Keras writes it (onnxruntime's PRelu is float32 only)
    positive = builder.op("Relu", [x.name], f"{layer.name}_positive")
    negated = builder.op("Neg", [x.name], f"{layer.name}_neg_x")
    negative = builder.op("Relu", [negated], f"{layer.name}_negative")
    slope = builder.constant(-alpha, f"{layer.name}_neg_alpha")
    scaled = builder.op("Mul", [slope, negative], f"{layer.name}_scaled")
    return Converted([builder.op("Add", [positive, scaled], layer.name)])


@converter(ThresholdedReLU)
def convert_thresholded_relu(conversion: Conversion) -> Converted:
    """``x * (x > theta)``, Keras's product (ONNX ThresholdedRelu gives 0 for NaN)."""
    layer, x = conversion.layer, conversion.inputs[0]
    return Converted([emit_above(conversion.builder, x, layer.name, layer.theta, select=False)])


@converter(Softmax)
def convert_softmax(conversion: Conversion) -> Converted:
    """``Softmax(axis)`` (per axis from opset 13); several axes give
    ``exp(x - logsumexp(x, axes))``. A mask hides logits and zeroes outputs as the Keras
    version that wrote the file did (``layers.activations.softmax``)."""
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    mask = conversion.masks[0] if conversion.masks else None
    version = layer.keras_version
    logits_rule = masked_logits_rule(version, layer.robust_masking)
    source = x
    if mask is not None and logits_rule is not None:
        source = _like(x, _mask_logits(builder, x, mask, logits_rule, version, layer.name))
    output_rule = masked_output_rule(version) if mask is not None else None
    name = f"{layer.name}_unmasked" if output_rule else layer.name
    out = _softmax(builder, source, layer, name)
    if output_rule:
        keep = _keep(builder, mask, x, layer.name, version >= (3, 13, 0))
        zero = constant(builder, 0.0, x, f"{layer.name}_zero")
        if output_rule == "where":
            out = builder.op("Where", [keep, out, zero], layer.name)
        else:
            factor = builder.op("Cast", [keep], f"{layer.name}_factor", to=onnx_type(x.dtype))
            out = builder.op("Mul", [out, factor], layer.name)
    return Converted([out])


def _keep(builder: GraphBuilder, mask: Value, x: Value, name: str, threshold: bool) -> str:
    """The mask as booleans (``mask > 0.5`` for a numeric mask, when Keras compares it)."""
    if np.dtype(mask.dtype) == np.bool_ or not threshold:
        return mask.name
    half = builder.constant(np.asarray(0.5, dtype=mask.dtype), f"{name}_half")
    return builder.op("Greater", [mask.name, half], f"{name}_keep")


def _mask_logits(
    builder: GraphBuilder, x: Value, mask: Value, rule: str, version: tuple, name: str
) -> str:
    negative = constant(builder, large_negative(x.dtype, version), x, f"{name}_large_negative")
    if rule == "where":
        keep = _keep(builder, mask, x, name, threshold=True)
        return builder.op("Where", [keep, x.name, negative], f"{name}_masked")
    # x + (1 - mask) * negative: a precomputed 0 / negative per mask value
    if np.dtype(mask.dtype) == np.bool_:
        adder = builder.op(
            "Where",
            [mask.name, constant(builder, 0.0, x, f"{name}_zero_add"), negative],
            f"{name}_adder",
        )
    else:
        as_float = builder.op("Cast", [mask.name], f"{name}_mask_float", to=onnx_type(x.dtype))
        hidden = builder.op(
            "Sub", [constant(builder, 1.0, x, f"{name}_one"), as_float], f"{name}_hidden"
        )
        adder = builder.op("Mul", [hidden, negative], f"{name}_adder")
    return builder.op("Add", [x.name, adder], f"{name}_masked")


def _softmax(builder: GraphBuilder, x: Value, layer: Softmax, name: str) -> str:
    rank = len(x.shape)
    axis = layer.axis
    if isinstance(axis, tuple) and len(axis) == 1:
        axis = axis[0]
    if isinstance(axis, int):
        if rank == 2 and layer.keras_version < (2, 4, 0):
            axis = -1  # multi-backend Keras 2 ignores the axis of rank-2 inputs
        return builder.op("Softmax", [x.name], name, axis=axis)
    axes = sorted(a % rank for a in axis)
    if layer.keras_version < (2, 4, 0) and rank == 2:
        return builder.op("Softmax", [x.name], name, axis=-1)
    if layer.keras_version < (2, 4, 0):
        top = _reduce(builder, "ReduceMax", x.name, axes, f"{name}_max")
        e = builder.op("Exp", [builder.op("Sub", [x.name, top], f"{name}_shifted")], f"{name}_exp")
        total = _reduce(builder, "ReduceSum", e, axes, f"{name}_sum")
        return builder.op("Div", [e, total], name)
    # exp(x - logsumexp(x, axes)); logsumexp = log(sum(exp(x - max))) + max, with an
    # infinite max replaced by 0, as Keras computes it
    raw_top = _reduce(builder, "ReduceMax", x.name, axes, f"{name}_raw_max")
    infinite = builder.op("IsInf", [raw_top], f"{name}_max_is_inf")
    top = builder.op(
        "Where", [infinite, constant(builder, 0.0, x, f"{name}_zero_max"), raw_top], f"{name}_max"
    )
    shifted = builder.op("Sub", [x.name, top], f"{name}_shifted")
    total = _reduce(
        builder, "ReduceSum", builder.op("Exp", [shifted], f"{name}_exp"), axes, f"{name}_sum"
    )
    logsumexp = builder.op("Add", [builder.op("Log", [total], f"{name}_log"), top], f"{name}_lse")
    return builder.op("Exp", [builder.op("Sub", [x.name, logsumexp], f"{name}_centred")], name)


def _reduce(builder: GraphBuilder, op_type: str, x: str, axes: list[int], name: str) -> str:
    """A reduction keeping dims; ``axes`` is an input from opset 13 for ReduceSum and from
    18 for the others."""
    if op_type == "ReduceSum" or builder.opset >= 18:
        return builder.op(op_type, [x, builder.int64s(axes, f"{name}_axes")], name, keepdims=1)
    return builder.op(op_type, [x], name, axes=axes, keepdims=1)
