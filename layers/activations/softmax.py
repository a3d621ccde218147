"""Softmax: ``exp(x) / sum(exp(x))`` over one or more axes, with masks (spec section 7)."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import activations
from layerserve.errors import ConfigError, ShapeError, UnknownArgumentError, received
from layerserve.layers.base import Layer

Axis = int | tuple[int, ...]
Version = tuple[int, int, int]


def masked_logits_rule(version: Version, robust_masking: bool) -> str | None:
    """How the Keras ``version`` hides masked positions before the softmax: ``"where"``
    (replace them by a large negative number: Keras >= 3.13, tf.keras with
    ``robust_masking``), ``"add"`` (add ``(1 - mask) * large negative``: Keras 3.0-3.12,
    tf.keras) or None (multi-backend Keras 2 ignores the mask)."""
    if version < (2, 4, 0):
        return None
    if version >= (3, 13, 0) or (version < (3, 0, 0) and robust_masking):
        return "where"
    return "add"


def masked_output_rule(version: Version) -> str | None:
    """How Keras zeroes the masked outputs (so that a fully masked row is all zeros):
    ``"where"`` (>= 3.14), ``"multiply"`` by the mask (3.10-3.13), or None (before 3.10
    and tf.keras, where such a row is uniform)."""
    if version >= (3, 14, 0):
        return "where"
    if version >= (3, 10, 0):
        return "multiply"
    return None


def large_negative(dtype: Any, version: Version) -> float:
    """What masked logits become: -1e9, or for float16 -3e4 (Keras 3) or half of float16's
    lowest value (tf.keras)."""
    if np.dtype(dtype) != np.float16:
        return -1e9
    return -3e4 if version >= (3, 0, 0) else float(np.finfo(np.float16).min) / 2.0


def _broadcasts_to(mask_shape: tuple, shape: tuple) -> bool:
    """Whether a mask of ``mask_shape`` broadcasts to ``shape`` (aligned from the right)
    without growing it."""
    if len(mask_shape) > len(shape):
        return False
    return all(m in (1, s) for m, s in zip(mask_shape[::-1], shape[::-1], strict=False))


def _check_mask(x: np.ndarray, mask: np.ndarray) -> None:
    if not _broadcasts_to(mask.shape, x.shape):
        raise ShapeError(
            "The `mask` of Softmax must be broadcastable to its inputs. "
            f"Received: inputs.shape={x.shape}, mask.shape={mask.shape}"
        )


def mask_logits(x: np.ndarray, mask: np.ndarray, rule: str, version: Version) -> np.ndarray:
    """The logits with masked positions hidden by ``rule`` (see :func:`masked_logits_rule`)."""
    negative = np.asarray(large_negative(x.dtype, version), dtype=x.dtype)
    if rule == "where":
        keep = mask if mask.dtype == bool else mask > 0.5
        return np.where(keep, x, negative)
    return x + (1.0 - mask.astype(x.dtype)) * negative


def softmax_over(x: np.ndarray, axis: Axis, version: Version) -> np.ndarray:
    """The softmax of the Keras ``version`` over ``axis``: several axes give
    ``exp(x - logsumexp(x, axes))`` (tf.keras and Keras 3); one axis the activation
    function, with its rank rules."""
    if isinstance(axis, tuple) and len(axis) > 1 and version >= (2, 4, 0):
        top = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
        top = np.where(np.isfinite(top), top, np.zeros((), x.dtype))
        logsumexp = np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top
        return np.exp(x - logsumexp)
    if isinstance(axis, tuple) and len(axis) == 1:
        axis = axis[0]
    return activations.keras_softmax(x, axis, version)


def _axis(value: Any) -> Axis:
    def is_int(a: Any) -> bool:
        return isinstance(a, (int, np.integer)) and not isinstance(a, bool)

    if is_int(value):
        return int(value)
    if isinstance(value, (list, tuple)) and value and all(is_int(a) for a in value):
        return tuple(int(a) for a in value)
    raise ConfigError(
        "Expected `axis` of Softmax to be an integer or a non-empty list of integers. "
        + received("axis", value)
    )


class Softmax(Layer):
    """Softmax over ``axis``; positions where the mask is False get no weight.

    Masks follow the Keras that wrote the file: Keras >= 3.10 zeroes masked outputs (a
    fully masked row is all zeros), tf.keras and Keras 3.0-3.9 do not (it is uniform),
    multi-backend Keras 2 ignores masks. The mask passes through.

    Args:
        axis: Integer or list of integers, the axes normalized over (default -1).
            Multi-backend Keras 2 uses the last axis of rank-2 inputs whatever it says.
        robust_masking: tf.keras only: replace masked logits instead of adding a large
            negative number to them.

    Input shape:
        Arbitrary (rank >= 2 in Keras 2).

    Output shape:
        Same as the input.
    """

    float_inputs_only = True

    supports_masking = True

    def __init__(self, axis: Any = -1, robust_masking: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = _axis(axis)
        if not isinstance(robust_masking, (bool, np.bool_)):
            raise ConfigError(
                "Expected `robust_masking` to be a boolean. "
                + received("robust_masking", robust_masking)
            )
        tf_keras = (2, 4, 0) <= self.keras_version < (3, 0, 0)
        if robust_masking and not tf_keras:
            raise UnknownArgumentError(
                "`robust_masking` is a tf.keras argument of Softmax; this Keras version "
                "has no such argument. " + received("robust_masking", robust_masking)
            )
        self.robust_masking = bool(robust_masking)

    def build(self, input_shape: tuple) -> None:
        rank = len(input_shape)
        if rank < 2 and self.keras_version < (3, 0, 0):
            raise ShapeError(
                "Cannot apply softmax to a tensor that is 1D. "
                + received("input_shape", tuple(input_shape))
            )
        axes = self.axis if isinstance(self.axis, tuple) else (self.axis,)
        if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) < len(axes):
            raise ShapeError(
                f"Softmax axis {self.axis} does not fit an input of rank {rank}. "
                + received("input_shape", tuple(input_shape))
            )

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        version = self.keras_version
        rule = masked_logits_rule(version, self.robust_masking)
        x = inputs
        if mask is not None and rule is not None:
            mask = np.asarray(mask)
            _check_mask(x, mask)
            x = mask_logits(x, mask, rule, version)
        outputs = softmax_over(x, self.axis, version)
        output_rule = masked_output_rule(version)
        if mask is not None and output_rule == "where":
            keep = mask if mask.dtype == bool else mask > 0.5
            outputs = np.where(keep, outputs, np.zeros((), outputs.dtype))
        elif mask is not None and output_rule == "multiply":
            # Keras 3.13 turns a non-boolean mask into mask > 0.5 first; 3.10-3.12 do not.
            keep = mask > 0.5 if version >= (3, 13, 0) and mask.dtype != bool else mask
            outputs = outputs * keep.astype(outputs.dtype)
        return outputs

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "axis": _stored_axis(self.axis)}
        if self.robust_masking:  # tf.keras saves it only when set
            config["robust_masking"] = True
        return config


def _stored_axis(axis: Axis) -> int | list[int]:
    return list(axis) if isinstance(axis, tuple) else axis
