"""Normalization layers as ONNX nodes, with every epsilon stated (ONNX defaults to 1e-5,
Keras to 1e-3) and every variance in two passes.

* BatchNormalization: folded into ``Mul`` + ``Add`` constants on the channel axis (no
  transposes, no epsilon clamping by a runtime's BatchNormalization kernel).
* LayerNormalization: the ONNX op (opset 17+, float32) when the axes are trailing and
  contiguous, else ReduceMean/Sub/Mul/ReduceMean/Add/Sqrt/Div (``rms_scaling``: no Sub).
* GroupNormalization: decomposed in the input's own layout (no transposes): per-channel
  moments, combined into their group's by a MatMul with a constant (C, C) matrix. (ONNX's
  GroupNormalization-21 runs in onnxruntime as a function that reshapes to
  ``(N, G, -1)``, which fails on an empty batch.)
* UnitNormalization: ReduceSumSquare -> Sqrt -> Max(floor) -> Div (LpNormalization has no
  floor: a zero vector would give NaN).
* RMSNormalization: ReduceMean(x*x) -> Add(eps) -> Sqrt -> Div -> Mul(scale).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from layerserve.export.builder import GraphBuilder, Value, onnx_type
from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers.normalization import (
    BatchNormalization,
    GroupNormalization,
    LayerNormalization,
    RMSNormalization,
    UnitNormalization,
)
from layerserve.layers.normalization.normalization_shapes import resolve_axes
from layerserve.layers.normalization.normalization_utils import placed
from layerserve.layers.normalization.unit_normalization import norm_floor


@converter(BatchNormalization)
def convert_batch_normalization(conversion: Conversion) -> Converted:
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    inv, res = layer.inference_constants()
    inv_constant = _placed_constant(builder, inv, f"{layer.name}_inv")
    res_constant = _placed_constant(builder, res, f"{layer.name}_res")
    scaled = builder.op("Mul", [x.name, inv_constant], f"{layer.name}_scaled")
    return Converted([builder.op("Add", [scaled, res_constant], layer.name)])


@converter(LayerNormalization)
def convert_layer_normalization(conversion: Conversion) -> Converted:
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    axes = sorted(layer.axes)
    gamma = placed(layer.gamma, layer.broadcast)
    beta = placed(layer.beta, layer.broadcast)
    trailing = axes == list(range(x.rank - len(axes), x.rank))
    fused = trailing and not layer.rms_scaling and layer.broadcast is not None
    if builder.opset >= 17 and fused and x.dtype == "float32":
        inner = layer.broadcast[axes[0] :]
        scale = np.ones(inner, x.dtype) if gamma is None else gamma.reshape(inner)
        inputs = [x.name, builder.constant(scale, f"{layer.name}_gamma")]
        if beta is not None:
            inputs.append(builder.constant(beta.reshape(inner), f"{layer.name}_beta"))
        out = builder.op(
            "LayerNormalization", inputs, layer.name, axis=axes[0], epsilon=layer.epsilon
        )
        return Converted([out])
    mean = _reduce(builder, "ReduceMean", x.name, axes, f"{layer.name}_mean")
    centred = builder.op("Sub", [x.name, mean], f"{layer.name}_centred")
    squares = builder.op("Mul", [centred, centred], f"{layer.name}_squares")
    variance = _reduce(builder, "ReduceMean", squares, axes, f"{layer.name}_variance")
    std = _sqrt_plus(builder, variance, layer.epsilon, x, f"{layer.name}_std")
    numerator = x.name if layer.rms_scaling else centred
    y = builder.op("Div", [numerator, std], f"{layer.name}_normalized")
    return Converted([_scale_shift(builder, y, gamma, beta, layer.name)])


@converter(GroupNormalization)
def convert_group_normalization(conversion: Conversion) -> Converted:
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    name, axis = layer.name, layer.channel_axis
    channels, groups = x.shape[axis], layer.group_count
    others = [a for a in range(1, x.rank) if a != axis]
    group_of = np.arange(channels) // (channels // groups)
    # same_group[c, d] = 1 when channels c and d share a group: (N, C) @ same_group sums
    # each channel's group.
    same_group = (group_of[:, None] == group_of[None, :]).astype(x.dtype)

    def per_channel(value: str, op_type: str, label: str) -> str:
        """``value`` reduced over every axis but the batch and the channel: (N, C)."""
        if not others:
            return value
        return _reduce(builder, op_type, value, others, f"{name}_{label}", keepdims=False)

    mask = conversion.masks[0] if conversion.masks else None
    if mask is None or not layer.uses_mask():
        # Every channel holds as many values, so a group's mean is its channels' mean.
        average = builder.constant(same_group / (channels // groups), f"{name}_group_average")

        def group_mean(value: str, label: str) -> str:
            means = per_channel(value, "ReduceMean", f"{label}_per_channel")
            return builder.op("MatMul", [means, average], f"{name}_{label}")

    else:  # tf.keras: the mask, broadcast to the input, weights the moments
        group_mean = _weighted_group_mean(builder, x, mask, same_group, per_channel, name)
        if mask.rank < x.rank:
            # Broadcast from the right, an (N, T) mask lies along (T, C) of an (N, T, C)
            # input: one row's moments are weighted by the other rows' masks.
            builder.batch_coupled.append(layer.name)

    def placed_on_channels(value: str, label: str) -> str:
        """(N, C) -> the input's rank, with 1s off the channel axis."""
        if not others:
            return value
        axes = builder.int64s(others, f"{name}_{label}_axes")
        return builder.op("Unsqueeze", [value, axes], f"{name}_{label}_placed")

    mean = placed_on_channels(group_mean(x.name, "mean"), "mean")
    centred = builder.op("Sub", [x.name, mean], f"{name}_centred")
    squares = builder.op("Mul", [centred, centred], f"{name}_squares")
    std = _sqrt_plus(builder, group_mean(squares, "variance"), layer.epsilon, x, f"{name}_std")
    y = builder.op("Div", [centred, placed_on_channels(std, "std")], f"{name}_normalized")
    gamma = placed(layer.gamma, layer.broadcast)
    beta = placed(layer.beta, layer.broadcast)
    return Converted([_scale_shift(builder, y, gamma, beta, name)])


def _weighted_group_mean(
    builder: GraphBuilder,
    x: Value,
    mask: Value,
    same_group: np.ndarray,
    per_channel: Callable[[str, str, str], str],
    name: str,
) -> Callable[[str, str], str]:
    """``sum(w * v) / sum(w)`` per group, 0 where the weights sum to 0 (the weights are
    0/1, so their sum is a whole number: dividing by ``max(sum, 1)`` is exact)."""
    shape = builder.op("Shape", [x.name], f"{name}_shape")
    expanded = builder.op("Expand", [mask.name, shape], f"{name}_mask_expanded")
    weights = builder.op("Cast", [expanded], f"{name}_weights", to=onnx_type(x.dtype))
    group_sum = builder.constant(same_group, f"{name}_group_sum")
    weight_sums = per_channel(weights, "ReduceSum", "weight_sums")
    counts = builder.op("MatMul", [weight_sums, group_sum], f"{name}_counts")
    one = builder.constant(np.ones((), dtype=x.dtype), f"{name}_one")
    divisor = builder.op("Max", [counts, one], f"{name}_divisor")

    def group_mean(value: str, label: str) -> str:
        weighted = builder.op("Mul", [weights, value], f"{name}_{label}_weighted")
        totals = per_channel(weighted, "ReduceSum", f"{label}_per_channel")
        grouped = builder.op("MatMul", [totals, group_sum], f"{name}_{label}_sums")
        return builder.op("Div", [grouped, divisor], f"{name}_{label}")

    return group_mean


@converter(UnitNormalization)
def convert_unit_normalization(conversion: Conversion) -> Converted:
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    axes = sorted(resolve_axes(layer.axis, x.rank, layer.name))
    squares = _reduce(builder, "ReduceSumSquare", x.name, axes, f"{layer.name}_sum_squares")
    norm = builder.op("Sqrt", [squares], f"{layer.name}_norm")
    floor = builder.constant(
        np.asarray(norm_floor(layer.keras_version), dtype=x.dtype), f"{layer.name}_floor"
    )
    floored = builder.op("Max", [norm, floor], f"{layer.name}_floored")
    return Converted([builder.op("Div", [x.name, floored], layer.name)])


@converter(RMSNormalization)
def convert_rms_normalization(conversion: Conversion) -> Converted:
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    squares = builder.op("Mul", [x.name, x.name], f"{layer.name}_squares")
    mean = _reduce(builder, "ReduceMean", squares, sorted(layer.axes), f"{layer.name}_mean_square")
    rms = _sqrt_plus(builder, mean, layer.epsilon, x, f"{layer.name}_rms")
    y = builder.op("Div", [x.name, rms], f"{layer.name}_normalized")
    scale = builder.constant(layer.scale.value, f"{layer.name}_scale")
    return Converted([builder.op("Mul", [y, scale], layer.name)])


# ---- shared pieces ------------------------------------------------------------------------


def _reduce(
    builder: GraphBuilder,
    op_type: str,
    value: str,
    axes: Sequence[int],
    name: str,
    keepdims: bool = True,
) -> str:
    """A reduction over ``axes``: an ``axes`` input from opset 18 (ReduceSum: 13), an
    attribute before."""
    if op_type == "ReduceSum" or builder.opset >= 18:
        axes_input = builder.int64s(list(axes), f"{name}_axes")
        return builder.op(op_type, [value, axes_input], name, keepdims=int(keepdims))
    return builder.op(op_type, [value], name, keepdims=int(keepdims), axes=list(axes))


def _sqrt_plus(builder: GraphBuilder, value: str, epsilon: float, x: Value, name: str) -> str:
    """``sqrt(value + epsilon)``, epsilon in the input's dtype."""
    eps = builder.constant(np.asarray(epsilon, dtype=x.dtype), f"{name}_epsilon")
    return builder.op("Sqrt", [builder.op("Add", [value, eps], f"{name}_plus_eps")], name)


def _placed_constant(builder: GraphBuilder, value: np.ndarray, name: str) -> str:
    """A constant in the input's broadcast shape, without the leading 1s (the batch axis
    and, for channels-last, every axis before the channels)."""
    shape = list(value.shape)
    while shape and shape[0] == 1:
        shape.pop(0)
    return builder.constant(value.reshape(shape), name)


def _scale_shift(
    builder: GraphBuilder,
    y: str,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    name: str,
) -> str:
    """``y * gamma + beta`` with the weights already placed on the input's axes."""
    if gamma is not None:
        y = builder.op(
            "Mul",
            [y, _placed_constant(builder, gamma, f"{name}_gamma")],
            name if beta is None else f"{name}_scaled",
        )
    if beta is not None:
        y = builder.op("Add", [y, _placed_constant(builder, beta, f"{name}_beta")], name)
    return y
