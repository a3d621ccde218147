"""The core layers and the other families, as ``write_fixtures.py`` writes them with
Keras 2.2.4 (``layer_cases``)."""

import numpy as np
from keras.layers import (
    ELU,
    GRU,
    LSTM,
    Activation,
    ActivityRegularization,
    Add,
    AlphaDropout,
    Average,
    BatchNormalization,
    Concatenate,
    Conv1D,
    Conv2D,
    Conv2DTranspose,
    Conv3DTranspose,
    Cropping2D,
    Cropping3D,
    Dense,
    Dot,
    Dropout,
    Embedding,
    Flatten,
    GaussianDropout,
    GaussianNoise,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    Input,
    LeakyReLU,
    Masking,
    Maximum,
    MaxPooling2D,
    Minimum,
    Multiply,
    Permute,
    PReLU,
    ReLU,
    RepeatVector,
    Reshape,
    SeparableConv2D,
    Softmax,
    SpatialDropout1D,
    Subtract,
    ThresholdedReLU,
    UpSampling2D,
    UpSampling3D,
    ZeroPadding2D,
    ZeroPadding3D,
)
from keras.models import Model, Sequential


def values(seed: int, *shape: int) -> np.ndarray:
    return np.random.RandomState(seed).uniform(-2, 2, shape).astype("float32")


def tail_padded(seed: int, valid: int, padded_steps: int, features: int) -> np.ndarray:
    x = values(seed, 2, valid + padded_steps, features)
    x[:, valid:] = 0.0
    return x


ACTIVATIONS = (
    "relu",
    "elu",
    "selu",
    "softplus",
    "softsign",
    "tanh",
    "sigmoid",
    "hard_sigmoid",
    "exponential",
    "linear",
    "softmax",
)


def layer_cases():
    """The core layers and the other families, in the arguments Keras 2.2 files use."""
    for seed, name in enumerate(ACTIVATIONS):
        yield (
            "dense-" + name,
            Sequential([Dense(4, activation=name, input_shape=(5,))]),
            [values(seed, 3, 5)],
        )
    yield (
        "activation-softmax-3d",
        Sequential([Activation("softmax", input_shape=(3, 4))]),
        [values(40, 2, 3, 4)],
    )
    yield (
        "dense-3d-no-bias",
        Sequential([Dense(3, use_bias=False, input_shape=(4, 5))]),
        [values(41, 2, 4, 5)],
    )
    yield (
        "core-reshaping-dropout",
        Sequential(
            [
                Reshape((4, 3), input_shape=(12,)),
                Permute((2, 1)),
                Flatten(),
                RepeatVector(2),
                Dropout(0.5),
                ActivityRegularization(0.1, 0.1),
                SpatialDropout1D(0.3),
            ]
        ),
        [values(42, 2, 12)],
    )
    yield (
        "embedding-mask-zero-gru",
        Sequential(
            [Embedding(10, 4, mask_zero=True, input_length=6), GRU(3, return_sequences=True)]
        ),
        [np.array([[3, 1, 4, 0, 0, 0], [0, 5, 9, 2, 6, 5], [3, 5, 8, 9, 7, 0]], "float32")],
    )
    yield (
        "lstm-unroll",
        Sequential([LSTM(3, unroll=True, return_sequences=True, input_shape=(4, 2))]),
        [values(43, 2, 4, 2)],
    )
    yield (
        "lstm-implementation-2-backwards",
        Sequential([LSTM(3, implementation=2, go_backwards=True, input_shape=(4, 2))]),
        [values(44, 2, 4, 2)],
    )
    yield (
        "gru-reset-after",
        Sequential([GRU(3, reset_after=True, return_sequences=True, input_shape=(4, 2))]),
        [values(45, 2, 4, 2)],
    )
    yield (
        "gru-relu-sigmoid",
        Sequential([GRU(3, activation="relu", recurrent_activation="sigmoid", input_shape=(4, 2))]),
        [values(46, 2, 4, 2)],
    )
    inputs = Input((4, 2))
    yield (
        "lstm-return-state",
        Model(inputs, LSTM(3, return_state=True)(inputs)),
        [values(47, 2, 4, 2)],
    )
    inputs = Input((5, 3))
    leading = tail_padded(48, 5, 0, 3)
    leading[:, 0] = 0.0  # a masked first step
    yield (
        "masking-lstm-unroll-leading",
        Model(inputs, LSTM(3, return_sequences=True, unroll=True)(Masking()(inputs))),
        [leading],
    )
    inputs = Input((5, 4))
    masked_input = Masking()(inputs)
    summed = Add()(
        [LSTM(3, return_sequences=True)(masked_input), GRU(3, return_sequences=True)(masked_input)]
    )
    yield "masked-merge-add-lstm", Model(inputs, LSTM(2)(summed)), [tail_padded(49, 3, 2, 4)]
    yield (
        "batchnormalization",
        Sequential([BatchNormalization(input_shape=(4, 3))]),
        [values(50, 2, 4, 3)],
    )
    yield (
        "batchnormalization-axis-1-no-scale-no-center",
        Sequential(
            [
                BatchNormalization(
                    axis=1, scale=False, center=False, epsilon=0.01, input_shape=(4, 3)
                )
            ]
        ),
        [values(51, 2, 4, 3)],
    )
    yield (
        "conv2d-batchnormalization-pooling",
        Sequential(
            [
                Conv2D(4, 3, activation="relu", input_shape=(8, 8, 2)),
                BatchNormalization(),
                MaxPooling2D(),
                GlobalAveragePooling2D(),
            ]
        ),
        [values(52, 2, 8, 8, 2)],
    )
    yield (
        "conv1d-causal-dilated-globalmaxpooling",
        Sequential(
            [
                Conv1D(3, 2, dilation_rate=2, padding="causal", input_shape=(8, 2)),
                GlobalMaxPooling1D(),
            ]
        ),
        [values(53, 2, 8, 2)],
    )
    yield (
        "separableconv2d-depth-multiplier",
        Sequential([SeparableConv2D(4, 3, depth_multiplier=2, input_shape=(6, 6, 2))]),
        [values(54, 2, 6, 6, 2)],
    )
    yield (
        "conv2dtranspose-output-padding",
        Sequential([Conv2DTranspose(2, 3, strides=2, output_padding=1, input_shape=(4, 4, 2))]),
        [values(55, 2, 4, 4, 2)],
    )
    yield (
        "conv3dtranspose",
        Sequential([Conv3DTranspose(2, 2, strides=2, input_shape=(3, 3, 3, 2))]),
        [values(56, 2, 3, 3, 3, 2)],
    )
    yield (
        "padding-cropping-upsampling-2d",
        Sequential(
            [
                ZeroPadding2D(((1, 2), (0, 1)), input_shape=(4, 5, 2)),
                Cropping2D(((1, 0), (2, 1))),
                UpSampling2D((2, 3)),
            ]
        ),
        [values(57, 2, 4, 5, 2)],
    )
    yield (
        "padding-cropping-upsampling-3d",
        Sequential(
            [
                ZeroPadding3D(1, input_shape=(2, 3, 2, 2)),
                Cropping3D(((1, 0), (0, 1), (1, 1))),
                UpSampling3D(2),
            ]
        ),
        [values(58, 2, 2, 3, 2, 2)],
    )
    yield (
        "upsampling2d-bilinear",
        Sequential([UpSampling2D(2, interpolation="bilinear", input_shape=(3, 4, 2))]),
        [values(59, 2, 3, 4, 2)],
    )
    yield (
        "advanced-activations",
        Sequential(
            [
                Dense(6, input_shape=(4,)),
                LeakyReLU(0.1),
                Dense(6),
                ELU(0.7),
                Dense(6),
                ThresholdedReLU(0.5),
                Dense(6),
                PReLU(),
                Dense(6),
                ReLU(max_value=1.5, negative_slope=0.1, threshold=0.2),
                Softmax(axis=-1),
            ]
        ),
        [values(60, 3, 4)],
    )
    yield (
        "prelu-shared-axes",
        Sequential([PReLU(shared_axes=[1, 2], input_shape=(3, 3, 2))]),
        [values(61, 2, 3, 3, 2)],
    )
    yield (
        "noise-layers",
        Sequential(
            [
                GaussianNoise(0.5, input_shape=(4,)),
                GaussianDropout(0.3),
                AlphaDropout(0.2),
                Dense(2),
            ]
        ),
        [values(62, 3, 4)],
    )
    a, b = Input((4,)), Input((4,))
    merged = [
        Add()([a, b]),
        Subtract()([a, b]),
        Multiply()([a, b]),
        Average()([a, b]),
        Maximum()([a, b]),
        Minimum()([a, b]),
        Concatenate()([a, b]),
        Dot(1)([a, b]),
        Dot(1, normalize=True)([a, b]),
    ]
    yield "merging", Model([a, b], merged), [values(63, 3, 4), values(64, 3, 4)]
    a, b = Input((3, 4)), Input((5, 4))
    yield "dot-3d", Model([a, b], Dot((2, 2))([a, b])), [values(65, 2, 3, 4), values(66, 2, 5, 4)]
    # A model nested as a layer: its .h5 group lists its layers' trainable weights before
    # the frozen layers' and the batch statistics. Frozen layer by layer (fine-tuning), and
    # frozen as a whole, which Keras 2.2 does not pass on to its layers.
    for name, freeze in (("nested-fine-tuning", "layers"), ("nested-frozen-model", "model")):
        base = Sequential(
            [
                Dense(8, input_shape=(8,)),
                BatchNormalization(),
                Activation("relu"),
                Dense(8, activation="tanh"),
                BatchNormalization(),
            ]
        )
        if freeze == "layers":
            for layer in base.layers[:2]:
                layer.trainable = False
        else:
            base.trainable = False
        inputs = Input((8,))
        yield name, Model(inputs, Dense(3)(base(inputs))), [values(67, 3, 8)]
