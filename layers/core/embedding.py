"""Embedding: rows of a ``(input_dim, output_dim)`` matrix looked up by integer index."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from layerserve.errors import ConfigError, NotSupportedError, ShapeError, received
from layerserve.layers.base import Layer
from layerserve.layers.tensor import KerasTensor, Shape
from layerserve.layers.weight_options import (
    add_owned_weight,
    positive_int,
    set_weight_options,
    weight_options_config,
)
from layerserve.serialization import serialize

_WEIGHTS = ("embeddings",)


def embedding_output_shape(input_shape: Shape, output_dim: int, input_length: Any = None) -> Shape:
    """``input_shape + (output_dim,)``; a Keras 2 ``input_length`` (an int or one entry per
    non-batch axis, None for "any") must agree with the known input sizes and fills in
    the unknown ones."""
    input_shape = tuple(input_shape)
    if input_length is None:
        return (*input_shape, output_dim)
    lengths = list(input_length) if isinstance(input_length, (list, tuple)) else [input_length]
    if len(lengths) != len(input_shape) - 1:
        raise ShapeError(
            f'"input_length" is {input_length}, but received input has shape {input_shape}'
        )
    for index, (given, actual) in enumerate(zip(lengths, input_shape[1:], strict=True)):
        if given is not None and actual is not None and given != actual:
            raise ShapeError(
                f'"input_length" is {input_length}, but received input has shape {input_shape}'
            )
        if given is None:
            lengths[index] = actual
    return (input_shape[0], *lengths, output_dim)


def embedding_indices(
    inputs: np.ndarray, input_dim: int, wrap_negative: bool, layer_name: str
) -> np.ndarray:
    """The int64 rows ``inputs`` select. Floats truncate toward zero (Keras casts them to
    int32). Negative indices in ``[-input_dim, 0)`` count from the end when
    ``wrap_negative`` (Keras 3); anything else out of range raises: Keras 3 on JAX would
    return NaN rows and TensorFlow on GPU zero rows, which must never be served."""
    values = np.asarray(inputs)
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)):
            raise ShapeError(
                f"Layer {layer_name} (Embedding) received non-finite indices (NaN or inf); "
                "indices must be integers."
            )
        values = np.trunc(values)
    low = -input_dim if wrap_negative else 0
    if values.size:
        smallest, largest = values.min(), values.max()
        if smallest < low or largest >= input_dim:
            raise ShapeError(
                f"Layer {layer_name} (Embedding) received indices outside [{low}, {input_dim}): "
                f"the input holds values from {_number(smallest)} to {_number(largest)}"
                + (
                    " (Keras 2 does not count negative indices from the end)."
                    if smallest < 0 and not wrap_negative
                    else "."
                )
            )
    indices = values.astype(np.int64)
    return np.where(indices < 0, indices + input_dim, indices)


def _number(value: Any) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class Embedding(Layer):
    """Turns non-negative integers (indexes) into dense vectors of fixed size.

    Args:
        input_dim: Size of the vocabulary, i.e. maximum integer index + 1.
        output_dim: Dimension of the dense embedding.
        embeddings_initializer, embeddings_regularizer, embeddings_constraint: Options of
            the ``embeddings`` matrix.
        activity_regularizer: Regularizer of the output.
        mask_zero: Whether the input value 0 is padding; the output mask is
            ``inputs != 0`` computed on the uncast input.
        input_length: Keras 2 only: the sequence length (an int, or one entry per
            non-batch axis); without an input shape it becomes ``input_shape``.
        sparse: tf.keras only; ``True`` (sparse outputs) is not supported.
        weights: Optional initial ``[embeddings]`` (Keras 3 also takes the bare matrix).
        lora_rank, lora_alpha, quantization_config: Keras 3; only the neutral values.

    Input shape:
        ``(batch_size, ...)`` integer indices (float inputs are truncated toward zero).
        Keras 3 counts negative indices ``>= -input_dim`` from the end; Keras 2 raises on
        them. Indices ``>= input_dim`` raise.

    Output shape:
        ``(batch_size, ..., output_dim)``.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        embeddings_initializer: Any = "uniform",
        embeddings_regularizer: Any = None,
        activity_regularizer: Any = None,
        embeddings_constraint: Any = None,
        mask_zero: bool = False,
        input_length: Any = None,
        sparse: bool = False,
        weights: Any = None,
        lora_rank: int | None = None,
        lora_alpha: float | None = None,
        quantization_config: Any = None,
        **kwargs: Any,
    ) -> None:
        if weights is not None and not (isinstance(weights, list) and len(weights) == 1):
            weights = [weights]  # Keras 3 accepts the bare matrix
        shape = kwargs.get("batch_input_shape")
        if isinstance(shape, (list, tuple)) and any(isinstance(d, (list, tuple)) for d in shape):
            # tf.keras writes a list input_length as one nested entry: [null, [2, null]].
            kwargs["batch_input_shape"] = [
                e for d in shape for e in (d if isinstance(d, (list, tuple)) else [d])
            ]
        super().__init__(activity_regularizer=activity_regularizer, weights=weights, **kwargs)
        self.input_dim = positive_int(input_dim, "input_dim")
        self.output_dim = positive_int(output_dim, "output_dim")
        if not isinstance(mask_zero, (bool, np.bool_)):
            raise ConfigError(
                "Expected `mask_zero` to be a boolean. " + received("mask_zero", mask_zero)
            )
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero
        set_weight_options(
            self,
            embeddings_initializer=embeddings_initializer,
            embeddings_regularizer=embeddings_regularizer,
            embeddings_constraint=embeddings_constraint,
        )
        self._refuse_unsupported(sparse, lora_rank, lora_alpha, quantization_config)
        self.input_length = self._input_length(input_length)

    def _refuse_unsupported(
        self, sparse: Any, lora_rank: Any, lora_alpha: Any, quantization_config: Any
    ) -> None:
        prefix = f"{type(self).__name__} {self.name}:"
        if sparse:
            raise NotSupportedError(
                f"{prefix} sparse outputs are not supported; layerserve returns dense arrays. "
                + received("sparse", sparse)
            )
        if lora_rank not in (None, 0) or isinstance(lora_rank, bool):
            raise NotSupportedError(
                f"{prefix} LoRA embeddings are not supported. " + received("lora_rank", lora_rank)
            )
        if lora_alpha is not None:
            raise NotSupportedError(
                f"{prefix} LoRA embeddings are not supported. " + received("lora_alpha", lora_alpha)
            )
        if quantization_config is not None:
            raise NotSupportedError(
                f"{prefix} quantized embeddings are not supported. "
                + received("quantization_config", quantization_config)
            )

    def _input_length(self, input_length: Any) -> Any:
        """Keras 2 turns ``input_length`` into the input shape (``(None,)`` without one);
        Keras 3 ignores it with a warning."""
        if input_length is not None:
            lengths = (
                list(input_length) if isinstance(input_length, (list, tuple)) else [input_length]
            )
            if not lengths or any(
                d is not None
                and (isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d <= 0)
                for d in lengths
            ):
                raise ConfigError(
                    "Expected `input_length` to be a positive integer or a list of positive "
                    "integers or None. " + received("input_length", input_length)
                )
        if self.keras_version >= (3, 0, 0):
            if input_length is not None:
                warnings.warn(
                    f"Embedding {self.name}: `input_length` is ignored, as Keras 3 ignores "
                    "it. " + received("input_length", input_length),
                    UserWarning,
                    stacklevel=3,
                )
            return None
        if input_length is None:
            normalized = None
            declared: tuple[int | None, ...] = (None,)
        elif isinstance(input_length, (list, tuple)):
            normalized = [None if d is None else int(d) for d in input_length]
            declared = tuple(normalized)
        else:
            normalized = int(input_length)
            declared = (normalized,)
        if not hasattr(self, "batch_input_shape"):
            self.batch_input_shape = (None, *declared)
            self._dtype_in_config = True
        return normalized

    def build(self, input_shape: Any = None) -> None:
        self.embeddings = add_owned_weight(self, "embeddings", (self.input_dim, self.output_dim))
        self.built = True

    def input_value_range(self) -> tuple[int, int]:
        return (0, self.input_dim)

    def accepted_input_range(self) -> tuple[int, int]:
        """Keras 3 counts negative indices from the end; Keras 2 refuses them."""
        low = -self.input_dim if self.keras_version >= (3, 0, 0) else 0
        return (low, self.input_dim)

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        indices = embedding_indices(
            inputs, self.input_dim, self.keras_version >= (3, 0, 0), self.name
        )
        return np.take(self.embeddings.value, indices, axis=0)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return embedding_output_shape(input_shape, self.output_dim, self.input_length)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        if not self.mask_zero:
            return None
        if isinstance(inputs, KerasTensor):
            return KerasTensor(inputs.shape, "bool")
        return np.asarray(inputs) != 0

    def output_dtype(self, input_dtype: str) -> str:
        return self.dtype  # indices in, the layer's floats out

    def _owns_activity_regularizer(self) -> bool:
        return True

    def get_config(self) -> dict[str, Any]:
        config = {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            **weight_options_config(self, _WEIGHTS, "initializer"),
            **weight_options_config(self, _WEIGHTS, "regularizer"),
            "activity_regularizer": serialize(self.activity_regularizer),
            **weight_options_config(self, _WEIGHTS, "constraint"),
            "mask_zero": self.mask_zero,
        }
        if self.keras_version < (3, 0, 0):
            config["input_length"] = self.input_length
        return config
