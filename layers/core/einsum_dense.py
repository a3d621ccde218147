"""EinsumDense: ``activation(einsum(equation, x, kernel) + bias)``, a core layer as in
Keras (``keras/src/layers/core/einsum_dense.py``); MultiHeadAttention's projections are
the same contraction (``layers/attention/mha_math.py``)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from layerserve import activations
from layerserve.errors import ConfigError, NotSupportedError, ShapeError, received
from layerserve.layers.base import Layer
from layerserve.layers.weight_options import (
    add_owned_weight,
    set_weight_options,
    weight_options_config,
)
from layerserve.serialization import serialize

_WEIGHTS = ("kernel", "bias")
_FORMS = (
    # (pattern on the equation with "..." replaced by "0", ellipsis on the left)
    ("([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)$", False),
    ("0([a-zA-Z]+),([a-zA-Z]+)->0([a-zA-Z]+)$", True),
    ("([a-zA-Z]{2,})0,([a-zA-Z]+)->([a-zA-Z]+)0$", False),
)

Shape = tuple[int | None, ...]


def _parse(equation: str) -> tuple[str, str, str, bool]:
    replaced = re.sub(r"\.\.\.", "0", equation)
    for pattern, left in _FORMS:
        match = re.match(pattern, replaced)
        if match:
            return match.group(1), match.group(2), match.group(3), left
    raise ConfigError(
        f"Invalid einsum equation '{equation}'. Equations must be in the form "
        "[X],[Y]->[Z], ...[X],[Y]->...[Z], or [X]...,[Y]->[Z].... " + received("equation", equation)
    )


def analyze_einsum(
    equation: str,
    bias_axes: str | None,
    input_shape: Shape,
    output_shape: tuple[int | None, ...],
    input_first: bool,
) -> tuple[Shape, Shape | None, Shape]:
    """Keras's ``_analyze_einsum_string``: ``(kernel_shape, bias_shape, full_output)``.
    ``input_first``: tf.keras sizes a weight axis from the input before the output."""
    input_spec, weight_spec, output_spec, left = _parse(equation)
    elided = len(input_shape) - len(input_spec)
    full = [input_shape[0], *output_shape]
    if elided > 0 and left:
        # the elided axes in order (Keras's analysis inserts them reversed, but its
        # tensors, traced through the einsum, have them in order)
        full[1:1] = input_shape[1:elided]
    elif elided > 0:
        full.extend(input_shape[len(input_shape) - elided :])
    if len(full) != len(output_spec) + max(elided, 0):
        raise ShapeError(
            f"EinsumDense output_shape {output_shape} does not have the rank the equation "
            f"{equation!r} gives inputs of shape {input_shape} (the output_shape excludes "
            f"the batch axis and the elided axes). " + received("output_shape", output_shape)
        )
    offset = elided if left else 0
    if left:
        input_map = {dim: i + elided - len(input_shape) for i, dim in enumerate(input_spec)}
    else:
        input_map = {dim: i for i, dim in enumerate(input_spec)}
    output_map = {dim: i + offset for i, dim in enumerate(output_spec)}
    try:
        for dim in input_spec:
            if dim in output_map:
                out, got = full[output_map[dim]], input_shape[input_map[dim]]
                if out is not None and out != got:
                    raise ShapeError(
                        f"Input shape and output shape do not match at shared dimension "
                        f"'{dim}'. Input shape is {got}, and output shape is {out}."
                    )
        kernel = []
        for dim in weight_spec:
            sources = [(input_map, input_shape), (output_map, full)]
            if not input_first:
                sources.reverse()
            found = [shape[where[dim]] for where, shape in sources if dim in where]
            if not found:
                raise ConfigError(
                    f"Weight dimension '{dim}' did not have a match in either the input "
                    f"spec '{input_spec}' or the output spec '{output_spec}'. "
                    + received("equation", equation)
                )
            kernel.append(found[0])
    except IndexError as exc:
        raise ShapeError(
            f"The equation {equation!r} does not fit the input shape {input_shape} and "
            f"output_shape {output_shape}. " + received("input_shape", input_shape)
        ) from exc
    for dim in output_spec:
        if dim not in input_spec and dim not in weight_spec:
            raise ConfigError(
                f"Dimension '{dim}' was specified in the output '{output_spec}' but has no "
                f"corresponding dim in the input or weight spec. " + received("equation", equation)
            )
    bias = None
    if bias_axes is not None:
        if any(char not in output_spec for char in bias_axes):
            raise ConfigError(
                f"Bias dimension was requested, but is not part of the output spec "
                f"'{output_spec}'. " + received("bias_axes", bias_axes)
            )
        sizes = {char: full[i + offset] for i, char in enumerate(output_spec)}
        first = min(output_spec.find(char) for char in bias_axes)
        bias = [sizes[c] if c in bias_axes else 1 for c in output_spec[first:]]
        if not left:
            bias += [1] * max(elided, 0)
    if any(d is None for d in kernel) or (bias is not None and None in bias):
        raise ShapeError(
            f"EinsumDense weights need known sizes; the equation {equation!r} leaves one "
            f"unknown. Received: input_shape={input_shape}, output_shape={output_shape}"
        )
    return tuple(kernel), None if bias is None else tuple(bias), tuple(full)


class EinsumDense(Layer):
    """A dense layer of any einsum contraction with its kernel.

    Args:
        equation: ``"ab,bc->ac"``, ``"...b,bc->...c"`` or ``"abc...,cd->abd..."``.
        output_shape: the output's shape without the batch axis (None: any size).
        activation: applied last. bias_axes: output letters the bias spans.
        kernel_*/bias_* initializers, regularizers, constraints: as Dense.
        lora_rank, lora_alpha, quantization_config (Keras 3): refused unless unset.

    Input shape:
        Of the rank the equation names (any, with an ellipsis).

    Output shape:
        ``(batch, *output_shape)`` with elided axes kept. No mask.
    """

    casts_inputs = True

    def __init__(
        self,
        equation: str,
        output_shape: Any,
        activation: Any = None,
        bias_axes: str | None = None,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        lora_rank: int | None = None,
        lora_alpha: float | None = None,
        quantization_config: Any = None,
        gptq_unpacked_column_size: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        for name, value in (
            ("lora_rank", lora_rank),
            ("quantization_config", quantization_config),
            ("gptq_unpacked_column_size", gptq_unpacked_column_size),
        ):
            if value:
                raise NotSupportedError(
                    f"Layer {self.name} (EinsumDense): LoRA and quantized kernels are not "
                    "supported. " + received(name, value)
                )
        if not isinstance(equation, str):
            raise ConfigError(
                "Expected `equation` to be a string. " + received("equation", equation)
            )
        _parse(equation)
        self.equation = equation
        if isinstance(output_shape, (int, np.integer)) or output_shape is None:
            output_shape = (output_shape,)
        try:
            self.partial_output_shape = tuple(None if d is None else int(d) for d in output_shape)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                "Expected `output_shape` to be an int or a tuple of ints and None. "
                + received("output_shape", output_shape)
            ) from exc
        if bias_axes is not None and not isinstance(bias_axes, str):
            raise ConfigError(
                "Expected `bias_axes` to be a string. " + received("bias_axes", bias_axes)
            )
        self.bias_axes = bias_axes
        self.activation = activations.get(activation)
        set_weight_options(
            self,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
        )
        self.kernel = None
        self.bias = None

    def _analyze(self, input_shape: Any) -> tuple[Shape, Shape | None, Shape]:
        return analyze_einsum(
            self.equation,
            self.bias_axes,
            tuple(input_shape),
            self.partial_output_shape,
            input_first=self.keras_version < (3, 0, 0),
        )

    def build(self, input_shape: Any) -> None:
        kernel_shape, bias_shape, _ = self._analyze(input_shape)
        self.kernel = add_owned_weight(self, "kernel", kernel_shape)
        if bias_shape is not None:
            self.bias = add_owned_weight(self, "bias", bias_shape)
        self.built = True

    def compute_output_shape(self, input_shape: Any) -> Shape:
        return self._analyze(input_shape)[2]

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        try:
            y = np.einsum(self.equation, inputs, self.kernel.value)
        except ValueError as exc:
            raise ShapeError(
                f"Layer {self.name} (EinsumDense): {exc}. "
                + received("input_shape", tuple(np.shape(inputs)))
            ) from exc
        if self.bias is not None:
            y = y + self.bias.value
        return self.activation(y)

    def _owns_activity_regularizer(self) -> bool:
        return True

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "output_shape": list(self.partial_output_shape),
            "equation": self.equation,
            "activation": activations.serialize(self.activation),
            "bias_axes": self.bias_axes,
            **weight_options_config(self, _WEIGHTS, "initializer"),
            **weight_options_config(self, _WEIGHTS, "regularizer"),
            "activity_regularizer": serialize(self.activity_regularizer),
            **weight_options_config(self, _WEIGHTS, "constraint"),
        }
