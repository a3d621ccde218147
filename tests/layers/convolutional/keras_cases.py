"""Every convolution layer, built by real Keras 3 (JAX) and tf_keras.

Each case chains layers so that one model covers several arguments that change the
numbers: padding (valid/same/causal), strides, dilation, groups, depth_multiplier,
output_padding, use_bias=False, activations (softmax reads the last axis, so it
checks the layout), both data formats, unknown (None) lengths.
"""

import functools
import inspect

from oracle_case import Case, masked_steps

CF = "channels_first"
_KERNEL_INITIALIZERS = ("kernel_initializer", "depthwise_initializer", "pointwise_initializer")


class ZeroKernels:
    """The Keras layers module, with kernels initialised to zeros. Keras 3 on JAX
    compiles a random initializer for every new kernel shape (seconds each); the writer
    draws every weight afterwards anyway."""

    def __init__(self, layers):
        self._layers = layers

    def __getattr__(self, name):
        cls = getattr(self._layers, name)
        parameters = inspect.signature(cls.__init__).parameters
        zeros = {key: "zeros" for key in _KERNEL_INITIALIZERS if key in parameters}
        return functools.partial(cls, **zeros) if zeros else cls


def case(case_id, build, **kwargs):
    return Case(case_id, lambda k, L: build(k, ZeroKernels(L)), **kwargs)


def seq(k, shape, *layers):
    return k.Sequential([k.Input(shape), *layers])


CASES = [
    # ---- Conv1D / Conv2D / Conv3D ---------------------------------------------------------
    case(
        "conv1d_causal_groups_variable_length",
        lambda k, L: seq(
            k,
            (None, 4),
            L.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu"),
            L.Conv1D(6, 2, strides=2, padding="same", groups=2, use_bias=False),
            L.Conv1D(3, 3, padding="valid", activation="softmax"),
        ),
    ),
    case(
        "conv1d_channels_first",
        lambda k, L: seq(
            k,
            (4, 9),
            L.Conv1D(4, 3, padding="causal", dilation_rate=2, data_format=CF),
            L.Conv1D(
                2, 2, strides=2, padding="same", groups=2, data_format=CF, activation="softmax"
            ),
        ),
    ),
    case(
        "conv1d_drops_mask",
        lambda k, L: seq(k, (6, 3), L.Masking(), L.Conv1D(2, 2)),
        inputs=[masked_steps()],
    ),
    case(
        "conv2d_groups_dilation_strides",
        lambda k, L: seq(
            k,
            (7, 8, 6),
            L.Conv2D(6, 3, padding="same", dilation_rate=(2, 1), groups=3, activation="tanh"),
            L.Conv2D(4, (2, 3), strides=(2, 1), padding="valid", use_bias=False),
            L.Conv2D(4, 3, strides=2, padding="same", activation="softmax"),
        ),
    ),
    case(
        "conv2d_channels_first",
        lambda k, L: seq(
            k,
            (4, 7, 6),
            L.Conv2D(
                4, 3, strides=2, padding="same", groups=2, data_format=CF, activation="softmax"
            ),
            L.Conv2D(2, 2, dilation_rate=2, padding="valid", data_format=CF, activation="relu"),
        ),
    ),
    case(
        "conv3d_groups_strides_dilation",
        lambda k, L: seq(
            k,
            (4, 5, 6, 2),
            L.Conv3D(4, (2, 3, 2), strides=(1, 2, 2), padding="same", groups=2, activation="relu"),
            L.Conv3D(2, 2, dilation_rate=(1, 2, 1), padding="valid", use_bias=False),
        ),
    ),
    case(
        "conv3d_channels_first",
        lambda k, L: seq(
            k,
            (2, 4, 5, 6),
            L.Conv3D(3, 2, strides=2, padding="same", data_format=CF, activation="selu"),
        ),
    ),
    case(
        "conv_flatten_dense",
        lambda k, L: seq(
            k,
            (6, 6, 2),
            L.Conv2D(3, 3, activation="relu"),
            L.DepthwiseConv2D(2, depth_multiplier=2),
            L.Flatten(),
            L.Dense(3),
        ),
    ),
    # ---- SeparableConv1D / 2D --------------------------------------------------------------
    case(
        "separable_conv1d",
        lambda k, L: seq(
            k,
            (9, 3),
            L.SeparableConv1D(
                4, 3, depth_multiplier=2, strides=2, padding="same", activation="elu"
            ),
            L.SeparableConv1D(2, 2, dilation_rate=2, padding="valid", use_bias=False),
        ),
    ),
    case(
        "separable_conv1d_channels_first",
        lambda k, L: seq(
            k, (3, 9), L.SeparableConv1D(4, 3, depth_multiplier=2, padding="same", data_format=CF)
        ),
    ),
    case(
        # tf.keras computes causal SeparableConv1D; Keras 3 refuses the argument.
        "separable_conv1d_causal",
        lambda k, L: seq(
            k,
            (None, 2),
            L.SeparableConv1D(3, 3, padding="causal", dilation_rate=2, depth_multiplier=2),
        ),
        flavours=("tf_keras",),
    ),
    case(
        "separable_conv2d",
        lambda k, L: seq(
            k,
            (7, 6, 3),
            L.SeparableConv2D(
                5, (3, 2), depth_multiplier=2, strides=(2, 1), padding="valid", activation="relu"
            ),
            L.SeparableConv2D(3, 3, dilation_rate=2, padding="same", use_bias=False),
        ),
    ),
    case(
        "separable_conv2d_channels_first",
        lambda k, L: seq(
            k,
            (3, 7, 6),
            L.SeparableConv2D(
                4, 3, strides=2, padding="same", data_format=CF, activation="softmax"
            ),
        ),
    ),
    case(
        # Keras 3 accepts strides > 1 with dilation > 1 here (tf.keras refuses it).
        "separable_conv2d_strides_and_dilation",
        lambda k, L: seq(
            k, (9, 8, 2), L.SeparableConv2D(3, 3, strides=2, dilation_rate=2, padding="same")
        ),
        flavours=("keras3",),
    ),
    # ---- DepthwiseConv1D / 2D --------------------------------------------------------------
    case(
        "depthwise_conv2d",
        lambda k, L: seq(
            k,
            (7, 6, 2),
            L.DepthwiseConv2D(3, depth_multiplier=3, strides=2, padding="same", activation="relu"),
            L.DepthwiseConv2D((2, 3), dilation_rate=(2, 1), use_bias=False),
        ),
    ),
    case(
        "depthwise_conv2d_channels_first",
        lambda k, L: seq(
            k,
            (2, 7, 6),
            L.DepthwiseConv2D(
                3, depth_multiplier=2, padding="same", data_format=CF, activation="softmax"
            ),
        ),
    ),
    case(
        "depthwise_conv1d",
        lambda k, L: seq(
            k,
            (9, 3),
            L.DepthwiseConv1D(3, depth_multiplier=2, padding="same", dilation_rate=2),
            L.DepthwiseConv1D(2, strides=2, use_bias=False, activation="tanh"),
        ),
    ),
    case(
        "depthwise_conv1d_channels_first",
        lambda k, L: seq(
            k,
            (3, 9),
            L.DepthwiseConv1D(3, depth_multiplier=2, strides=2, padding="same", data_format=CF),
        ),
    ),
    case(
        # onnxruntime refuses auto_pad SAME with dilation, and the pads need the length.
        "depthwise_conv1d_strides_dilation_variable_length",
        lambda k, L: seq(
            k, (None, 3), L.DepthwiseConv1D(3, strides=2, dilation_rate=2, padding="same")
        ),
        flavours=("keras3",),
        export_refused="needs known spatial sizes",
    ),
    # ---- Conv1DTranspose / 2D / 3D ---------------------------------------------------------
    case(
        "conv1d_transpose_variable_length",
        lambda k, L: seq(
            k,
            (None, 3),
            L.Conv1DTranspose(4, 3, strides=2, padding="same"),
            L.Conv1DTranspose(3, 2, strides=3, output_padding=1, activation="tanh"),
            L.Conv1DTranspose(2, 3, dilation_rate=2, padding="same"),
            L.Conv1DTranspose(2, 1, strides=3, padding="valid"),
        ),
    ),
    case(
        "conv1d_transpose_channels_first",
        lambda k, L: seq(
            k, (3, 5), L.Conv1DTranspose(2, 3, strides=2, use_bias=False, data_format=CF)
        ),
    ),
    case(
        "conv2d_transpose_crops",
        lambda k, L: seq(
            k,
            (3, 4, 2),
            L.Conv2DTranspose(4, 3, strides=2, padding="same"),
            L.Conv2DTranspose(3, (2, 3), strides=(2, 3), padding="valid"),
            L.Conv2DTranspose(2, 4, strides=3, padding="same", output_padding=2, activation="relu"),
            L.Conv2DTranspose(2, 2, strides=3, padding="valid", output_padding=(2, 1)),
        ),
    ),
    case(
        "conv2d_transpose_dilated",
        lambda k, L: seq(
            k,
            (4, 5, 2),
            L.Conv2DTranspose(3, 3, dilation_rate=2, padding="same"),
            L.Conv2DTranspose(2, (3, 2), dilation_rate=3, use_bias=False),
        ),
    ),
    case(
        "conv2d_transpose_channels_first",
        lambda k, L: seq(
            k,
            (2, 3, 4),
            L.Conv2DTranspose(
                3, 3, strides=2, use_bias=False, activation="softmax", data_format=CF
            ),
            L.Conv2DTranspose(2, 2, strides=2, padding="same", output_padding=1, data_format=CF),
        ),
    ),
    case(
        "conv3d_transpose",
        lambda k, L: seq(
            k,
            (2, 3, 2, 2),
            L.Conv3DTranspose(
                3, (2, 3, 2), strides=(2, 1, 2), padding="same", output_padding=(1, 0, 1)
            ),
            L.Conv3DTranspose(2, 2, strides=2, activation="relu"),
        ),
    ),
    case(
        "conv3d_transpose_channels_first",
        lambda k, L: seq(
            k, (2, 2, 3, 2), L.Conv3DTranspose(2, 3, strides=2, padding="same", data_format=CF)
        ),
    ),
    case(
        # tf.keras ignores (and does not save) dilation_rate in Conv3DTranspose, and its
        # Conv2DTranspose refuses unequal rates.
        "conv_transpose_unequal_dilation",
        lambda k, L: seq(
            k,
            (3, 3, 2, 2),
            L.Conv3DTranspose(2, 2, dilation_rate=(2, 1, 3), padding="same"),
            L.Reshape((9, 2, 2)),
            L.Conv2DTranspose(2, (3, 2), dilation_rate=(1, 3)),
        ),
        flavours=("keras3",),
    ),
    # No input channels: Keras 3 builds and saves these, and fails when they are called
    # (tf.keras refuses to build them); layerserve refuses the file. A transposed
    # convolution answers its bias in Keras 3, and in layerserve.
    *(
        case(
            f"{kind.lower()}_no_channels",
            lambda k, L, kind=kind, arguments=arguments: seq(
                k, (None, 0), getattr(L, kind)(*arguments)
            ),
            flavours=("keras3",),
            input_refused="",
            refused="expects at least one input channel",
        )
        for kind, arguments in [
            ("Conv1D", (2, 3)),
            ("SeparableConv1D", (2, 3)),
            ("DepthwiseConv1D", (3,)),
        ]
    ),
    case(
        "conv1d_transpose_no_channels",
        lambda k, L: seq(k, (None, 0), L.Conv1DTranspose(2, 3)),
        flavours=("keras3",),
    ),
]
