"""Bad arguments and bad input shapes raise typed errors with a message that says what
was expected and what was received."""

import numpy as np
import pytest

from layerserve.errors import ConfigError, NotSupportedError, ShapeError, UnknownArgumentError
from layerserve.layers import (
    Conv1D,
    Conv1DTranspose,
    Conv2D,
    Conv2DTranspose,
    Conv3D,
    Conv3DTranspose,
    DepthwiseConv1D,
    DepthwiseConv2D,
    Input,
    SeparableConv1D,
    SeparableConv2D,
)

BAD_ARGUMENTS = [
    # (make, error, fragments of the message)
    (lambda: Conv1D(0, 3), ConfigError, ["filters", "Received: filters=0"]),
    (lambda: Conv1D(2.5, 3), ConfigError, ["filters"]),
    (lambda: Conv1D(4, (3, 3)), ConfigError, ["kernel_size", "1 positive"]),
    (lambda: Conv3D(4, (3, 3)), ConfigError, ["kernel_size", "3 positive"]),
    (lambda: Conv2D(4, 3, strides=(1, 0)), ConfigError, ["strides"]),
    (lambda: Conv2D(4, 3, dilation_rate=True), ConfigError, ["dilation_rate"]),
    (lambda: Conv1D(4, 3, strides=2, dilation_rate=2), ConfigError, ["strides > 1", "(2,)"]),
    (lambda: Conv3D(4, 3, strides=(1, 1, 2), dilation_rate=(2, 1, 1)), ConfigError, ["dilation"]),
    (lambda: Conv2D(4, 3, padding="causal"), ConfigError, ["Conv2D", "Received: padding="]),
    (lambda: Conv1D(4, 3, padding="full"), ConfigError, ["'causal'", "padding='full'"]),
    (lambda: Conv1D(4, 3, padding=[1, 1]), ConfigError, ["padding=[1, 1]"]),
    (lambda: Conv2D(4, 3, data_format="NCHW"), ConfigError, ["data_format='NCHW'"]),
    (lambda: Conv2D(4, 3, groups=0), ConfigError, ["groups", "Received: groups=0"]),
    (lambda: Conv2D(4, 3, groups=3), ConfigError, ["divisible", "groups=3, filters=4"]),
    (lambda: DepthwiseConv1D(3, padding="causal"), ConfigError, ["DepthwiseConv1D"]),
    (lambda: DepthwiseConv2D(3, depth_multiplier=0), ConfigError, ["depth_multiplier"]),
    (lambda: SeparableConv2D(2, 3, depth_multiplier=-1), ConfigError, ["depth_multiplier"]),
    (lambda: SeparableConv2D(2, 3, padding="causal"), ConfigError, ["SeparableConv2D"]),
    (lambda: SeparableConv1D(0, 3), ConfigError, ["filters"]),
    (lambda: DepthwiseConv2D(3, groups=3), NotSupportedError, ["DepthwiseConv2D", "groups=3"]),
    (lambda: Conv1DTranspose(2, 3, padding="causal"), ConfigError, ["Conv1DTranspose"]),
    (lambda: Conv2DTranspose(2, 3, strides=2, output_padding=2), ConfigError, ["output_padding"]),
    (lambda: Conv2DTranspose(2, 3, output_padding=(0, 1)), ConfigError, ["strictly less"]),
    (lambda: Conv1DTranspose(2, 3, output_padding=-1), ConfigError, ["non-negative"]),
    (lambda: Conv3DTranspose(2, 3, strides=2, dilation_rate=2), ConfigError, ["dilation"]),
    (lambda: Conv2DTranspose(2, 3, groups=2), NotSupportedError, ["groups=2"]),
    (lambda: Conv2D(2, 3, flux=1), UnknownArgumentError, ["flux", "Conv2D"]),
    (lambda: DepthwiseConv2D(3, filters=2), UnknownArgumentError, ["filters"]),
]


@pytest.mark.parametrize(("make", "error", "fragments"), BAD_ARGUMENTS)
def test_bad_arguments_raise_typed_errors(make, error, fragments):
    with pytest.raises(error) as info:
        make()
    message = str(info.value)
    assert "Received" in message
    for fragment in fragments:
        assert fragment in message, message


BAD_INPUTS = [
    # (layer, input shape without batch, fragments)
    (Conv1D(2, 3, name="c1"), (5, 5, 2), ["c1", "ndim=3", "ndim=4"]),
    (Conv3D(2, 2, name="c3"), (4, 4, 2), ["c3", "ndim=5", "ndim=4"]),
    (DepthwiseConv1D(2, name="dw"), (4, 4, 2), ["dw", "ndim=3"]),
    (Conv2DTranspose(2, 2, name="tr"), (4, 2), ["tr", "ndim=4", "ndim=3"]),
    (Conv1D(2, 4), (3, 2), ["output size", "(0,)", "kernel_size=(4,)"]),
    (Conv2D(2, 3, dilation_rate=3), (6, 9, 1), ["output size", "dilation_rate=(3, 3)"]),
    (SeparableConv2D(2, (2, 5)), (4, 4, 1), ["SeparableConv2D", "output size"]),
    (DepthwiseConv2D(3, dilation_rate=2), (4, 9, 3), ["DepthwiseConv2D", "output size"]),
    (Conv2D(4, 3, groups=2), (5, 5, 3), ["groups=2", "3 channels"]),
    (Conv1DTranspose(2, 3), (0, 3), ["at least 1"]),
]


@pytest.mark.parametrize(("layer", "shape", "fragments"), BAD_INPUTS)
def test_bad_input_shapes_raise_shape_errors(layer, shape, fragments):
    for call in (
        lambda: layer(Input(shape)),
        lambda: layer(np.zeros((1, *shape), dtype="float32")),
    ):
        with pytest.raises(ShapeError) as info:
            call()
        for fragment in fragments:
            assert fragment in str(info.value), str(info.value)


@pytest.mark.parametrize(
    "layer",
    [Conv2D(2, 3), SeparableConv1D(2, 3), DepthwiseConv2D(3), Conv3DTranspose(2, 2)],
    ids=lambda layer: type(layer).__name__,
)
def test_unknown_channels_raise(layer):
    shape = (None,) * (layer.rank + 1)
    with pytest.raises(ShapeError, match="channel dimension"):
        layer(Input(batch_shape=(None, *shape)))


def test_channels_are_fixed_after_build():
    layer = Conv1D(2, 2, name="c")
    layer(np.zeros((1, 4, 3), "float32"))
    with pytest.raises(ShapeError, match="axis -1 of input shape to have value 3"):
        layer(np.zeros((1, 4, 2), "float32"))
    first = DepthwiseConv2D(2, data_format="channels_first")
    first(np.zeros((1, 3, 4, 4), "float32"))
    with pytest.raises(ShapeError, match="axis 1 of input shape to have value 3"):
        first(np.zeros((1, 4, 4, 4), "float32"))
