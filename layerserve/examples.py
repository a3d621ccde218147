"""The models the Keras documentation uses as examples, with seeded weights.

They are the demo models layerserve bundles: each builder returns the same weights on
every call, so outputs are reproducible.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from layerserve import backend as K
from layerserve import initializers
from layerserve.layers import LSTM, Conv2D, Dense, Dropout, Flatten, Input, Lambda, Masking
from layerserve.layers.rnn.gru import GRU
from layerserve.models import Model, Sequential


def _glorot(seed: int) -> initializers.VarianceScaling:
    return initializers.glorot_uniform(seed=seed)


def mlp() -> Sequential:
    """A 784-256-128-10 softmax classifier (the MNIST MLP of the Keras examples)."""
    return Sequential(
        [
            Dense(
                256,
                activation="relu",
                input_shape=(784,),
                kernel_initializer=_glorot(1),
                name="hidden_1",
            ),
            Dropout(0.2, name="dropout_1"),
            Dense(128, activation="relu", kernel_initializer=_glorot(2), name="hidden_2"),
            Dropout(0.2, name="dropout_2"),
            Dense(10, activation="softmax", kernel_initializer=_glorot(3), name="probabilities"),
        ],
        name="mlp",
    )


def conv_flatten() -> Sequential:
    """The Flatten docs example: Conv2D(64, (3, 3), input_shape=(3, 32, 32),
    padding='same') then Flatten, channels_first: (None, 64, 32, 32) -> (None, 65536)."""
    return Sequential(
        [
            Conv2D(
                64,
                (3, 3),
                input_shape=(3, 32, 32),
                padding="same",
                data_format="channels_first",
                kernel_initializer=_glorot(4),
                name="conv",
            ),
            Flatten(data_format="channels_first", name="flatten"),
        ],
        name="conv_flatten",
    )


def masking_lstm(timesteps: int = 10, features: int = 8) -> Sequential:
    """The Masking docs example: timesteps whose features are all 0 are skipped."""
    return Sequential(
        [
            Masking(mask_value=0.0, input_shape=(timesteps, features), name="masking"),
            LSTM(
                32,
                kernel_initializer=_glorot(5),
                recurrent_initializer=initializers.Orthogonal(seed=6),
                name="lstm",
            ),
        ],
        name="masking_lstm",
    )


def _recurrent_32(kind: str, masked: bool, timesteps: int, features: int) -> Sequential:
    """LSTM(32) or GRU(32) over (timesteps, features), behind Masking or not: the same
    seeded weights either way, so the two differ only by the mask."""
    layer_class = {"lstm": LSTM, "gru": GRU}[kind]
    # The tf.keras / Keras 3 defaults, whatever the semantics version in effect.
    options = {"reset_after": True} if kind == "gru" else {}
    recurrent = layer_class(
        32,
        recurrent_activation="sigmoid",
        **options,
        kernel_initializer=_glorot(12),
        recurrent_initializer=initializers.Orthogonal(seed=13),
        name=kind,
    )
    if not masked:
        return Sequential([Input((timesteps, features), name="x"), recurrent], name=f"{kind}")
    masking = Masking(mask_value=0.0, input_shape=(timesteps, features), name="masking")
    return Sequential([masking, recurrent], name=f"masking_{kind}")


def lstm_unmasked(timesteps: int = 10, features: int = 8) -> Sequential:
    """LSTM(32) with the weights of :func:`masked_lstm`, and no mask."""
    return _recurrent_32("lstm", False, timesteps, features)


def masked_lstm(timesteps: int = 10, features: int = 8) -> Sequential:
    """Masking then LSTM(32): all-zero timesteps, wherever they are, are skipped."""
    return _recurrent_32("lstm", True, timesteps, features)


def gru_unmasked(timesteps: int = 10, features: int = 8) -> Sequential:
    """GRU(32) with the weights of :func:`masked_gru`, and no mask."""
    return _recurrent_32("gru", False, timesteps, features)


def masked_gru(timesteps: int = 10, features: int = 8) -> Sequential:
    """Masking then GRU(32): all-zero timesteps, wherever they are, are skipped."""
    return _recurrent_32("gru", True, timesteps, features)


def masking_sequence(timesteps: int = 5, features: int = 3) -> Sequential:
    """Masking then LSTM(return_sequences=True): one output per timestep, and the mask
    (which timesteps were all 0) as the output's mask; served, it becomes a second
    output, ``lstm_mask``."""
    return Sequential(
        [
            Masking(mask_value=0.0, input_shape=(timesteps, features), name="masking"),
            LSTM(
                2,
                return_sequences=True,
                kernel_initializer=_glorot(10),
                recurrent_initializer=initializers.Orthogonal(seed=11),
                name="lstm",
            ),
        ],
        name="masking_sequence",
    )


def antirectifier(x: np.ndarray) -> np.ndarray:
    """The Lambda docs example: the positive and negative parts of a centred, normalised x."""
    x -= K.mean(x, axis=1, keepdims=True)
    x = K.l2_normalize(x, axis=1)
    pos = K.relu(x)
    neg = K.relu(-x)
    return K.concatenate([pos, neg], axis=1)


def antirectifier_output_shape(input_shape: tuple) -> tuple:
    shape = list(input_shape)
    shape[-1] *= 2
    return tuple(shape)


def antirectifier_model() -> Sequential:
    return Sequential(
        [
            Dense(16, input_shape=(8,), kernel_initializer=_glorot(7), name="dense"),
            Lambda(antirectifier, output_shape=antirectifier_output_shape, name="antirectifier"),
        ],
        name="antirectifier",
    )


def hadamard_product_sum(tensors: list[np.ndarray]) -> list[np.ndarray]:
    """The Lambda docs example: the Hadamard product of two tensors and its sum."""
    out1 = tensors[0] * tensors[1]
    out2 = K.sum(out1, axis=-1)
    return [out1, out2]


def hadamard_product_sum_output_shape(input_shapes: list[tuple]) -> list[tuple]:
    shape1, shape2 = list(input_shapes[0]), list(input_shapes[1])
    return [tuple(shape1), tuple(shape2[:-1])]


def hadamard_model() -> Model:
    """Two Dense branches joined by the docs' hadamard_product_sum Lambda."""
    left, right = Input((8,), name="left"), Input((8,), name="right")
    x1 = Dense(32, kernel_initializer=_glorot(8), name="dense_left")(left)
    x2 = Dense(32, kernel_initializer=_glorot(9), name="dense_right")(right)
    layer = Lambda(hadamard_product_sum, hadamard_product_sum_output_shape, name="hadamard")
    product, total = layer([x1, x2])
    return Model([left, right], [product, total], name="hadamard")


EXAMPLES: dict[str, Callable[[], Model]] = {
    "mlp": mlp,
    "conv_flatten": conv_flatten,
    "masking_lstm": masking_lstm,
    "masking_sequence": masking_sequence,
    "antirectifier": antirectifier_model,
    "hadamard": hadamard_model,
}


def example_inputs(model: Model, batch: int = 2, seed: int = 0) -> list[np.ndarray]:
    """Random inputs of the model's shapes; sequences get trailing all-zero timesteps."""
    rng = np.random.default_rng(seed)
    arrays = []
    for tensor in model.inputs:
        shape = (batch, *(d or 1 for d in tensor.shape[1:]))
        array = rng.standard_normal(shape).astype(tensor.dtype)
        if len(shape) == 3:
            array[:, shape[1] // 2 :, :] = 0.0
        arrays.append(array)
    return arrays
