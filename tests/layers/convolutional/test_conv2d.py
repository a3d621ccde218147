"""Conv2D against independent references: a direct loop and a scipy correlation."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from layerserve import backend as K
from layerserve.errors import ShapeError
from layerserve.layers import Conv2D, Flatten, Input
from layerserve.models import Sequential

RTOL, ATOL = 1e-5, 1e-6


def expected_length(size, kernel, stride, dilation, padding):
    dk = kernel + (kernel - 1) * (dilation - 1)
    if padding == "same":
        return math.ceil(size / stride)
    return math.ceil((size - dk + 1) / stride)


def tf_same_pads(size, kernel, stride, dilation):
    dk = kernel + (kernel - 1) * (dilation - 1)
    total = max((math.ceil(size / stride) - 1) * stride + dk - size, 0)
    return total // 2, total - total // 2


def conv2d_loops(x_nhwc, kernel, bias, strides, padding, dilation):
    """Direct cross-correlation: six nested loops over n, out row, out col, filter, taps."""
    n_, h, w, c_in = x_nhwc.shape
    kh, kw, _, filters = kernel.shape
    top = left = 0
    if padding == "same":
        top, _ = tf_same_pads(h, kh, strides[0], dilation[0])
        left, _ = tf_same_pads(w, kw, strides[1], dilation[1])
    out_h = expected_length(h, kh, strides[0], dilation[0], padding)
    out_w = expected_length(w, kw, strides[1], dilation[1], padding)
    out = np.zeros((n_, out_h, out_w, filters))
    for n in range(n_):
        for oh in range(out_h):
            for ow in range(out_w):
                for f in range(filters):
                    total = float(bias[f])
                    for i in range(kh):
                        for j in range(kw):
                            row = oh * strides[0] + i * dilation[0] - top
                            col = ow * strides[1] + j * dilation[1] - left
                            if 0 <= row < h and 0 <= col < w:  # zero padding outside
                                total += float(np.dot(x_nhwc[n, row, col], kernel[i, j, :, f]))
                    out[n, oh, ow, f] = total
    return out


def conv2d_scipy(x_nhwc, kernel, bias, strides, padding, dilation):
    """scipy 'valid' correlation on an explicitly padded input with a dilated kernel."""
    kh, kw, c_in, filters = kernel.shape
    dil = np.zeros(
        ((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1, c_in, filters), kernel.dtype
    )
    dil[:: dilation[0], :: dilation[1]] = kernel
    x = x_nhwc.astype(np.float64)
    if padding == "same":
        pads_h = tf_same_pads(x.shape[1], kh, strides[0], dilation[0])
        pads_w = tf_same_pads(x.shape[2], kw, strides[1], dilation[1])
        x = np.pad(x, ((0, 0), pads_h, pads_w, (0, 0)))
    outputs = []
    for n in range(x.shape[0]):
        maps = []
        for f in range(filters):
            acc = sum(
                signal.correlate(x[n, :, :, c], dil[:, :, c, f], mode="valid") for c in range(c_in)
            )
            maps.append(acc[:: strides[0], :: strides[1]] + bias[f])
        outputs.append(np.stack(maps, axis=-1))
    return np.stack(outputs)


CASES = [
    # (H, W, C, filters, kernel, strides, padding, dilation)
    (5, 5, 2, 3, (3, 3), (1, 1), "valid", (1, 1)),
    (5, 5, 2, 3, (3, 3), (1, 1), "same", (1, 1)),
    (6, 7, 1, 2, (2, 3), (2, 2), "same", (1, 1)),
    (6, 7, 2, 2, (2, 3), (2, 2), "valid", (1, 1)),
    (7, 6, 3, 2, (3, 2), (3, 1), "same", (1, 1)),
    (8, 8, 2, 1, (4, 4), (2, 3), "same", (1, 1)),
    (7, 7, 2, 2, (3, 3), (1, 1), "valid", (2, 2)),
    (7, 8, 2, 2, (3, 2), (1, 1), "same", (2, 3)),
    (6, 6, 1, 3, (2, 2), (1, 1), "same", (2, 1)),
    (4, 5, 2, 2, (1, 1), (2, 2), "valid", (1, 1)),
    (3, 3, 2, 2, (3, 3), (1, 1), "valid", (1, 1)),
    (4, 4, 1, 1, (5, 5), (1, 1), "same", (1, 1)),
]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize(
    ("h", "w", "c", "filters", "kernel", "strides", "padding", "dilation"), CASES
)
def test_conv2d_matches_direct_loops(
    rng, data_format, h, w, c, filters, kernel, strides, padding, dilation
):
    x_nhwc = rng.normal(size=(2, h, w, c)).astype("float32")
    layer = Conv2D(
        filters,
        kernel,
        strides=strides,
        padding=padding,
        dilation_rate=dilation,
        data_format=data_format,
    )
    x = x_nhwc if data_format == "channels_last" else np.transpose(x_nhwc, (0, 3, 1, 2))
    layer(x)  # build
    weights = [
        rng.normal(size=(*kernel, c, filters)).astype("float32"),
        rng.normal(size=(filters,)).astype("float32"),
    ]
    layer.set_weights(weights)
    assert [w_.shape for w_ in layer.get_weights()] == [(*kernel, c, filters), (filters,)]
    y = layer(x)
    expected = conv2d_loops(x_nhwc, *weights, strides, padding, dilation)
    out_h = expected_length(h, kernel[0], strides[0], dilation[0], padding)
    out_w = expected_length(w, kernel[1], strides[1], dilation[1], padding)
    if data_format == "channels_first":
        assert y.shape == (2, filters, out_h, out_w)
        expected = np.transpose(expected, (0, 3, 1, 2))
    else:
        assert y.shape == (2, out_h, out_w, filters)
    np.testing.assert_allclose(y, expected, rtol=RTOL, atol=1e-5)
    # The symbolic shape agrees with the formula, with a None batch axis.
    symbolic_in = (None, *x.shape[1:])
    assert layer.compute_output_shape(symbolic_in) == (None, *y.shape[1:])


@settings(max_examples=30, deadline=None)
@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    c=st.integers(1, 3),
    filters=st.integers(1, 3),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.sampled_from(["same", "valid"]),
    use_dilation=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_conv2d_matches_scipy(
    h, w, c, filters, kh, kw, stride, dilation, padding, use_dilation, seed
):
    strides, dilation_rate = ((1, 1), dilation) if use_dilation else (stride, (1, 1))
    dk = (kh + (kh - 1) * (dilation_rate[0] - 1), kw + (kw - 1) * (dilation_rate[1] - 1))
    gen = np.random.default_rng(seed)
    x = gen.normal(size=(2, h, w, c)).astype("float32")
    layer = Conv2D(
        filters,
        (kh, kw),
        strides=strides,
        padding=padding,
        dilation_rate=dilation_rate,
        activation="relu",
        bias_initializer="random_normal",
    )
    if padding == "valid" and (dk[0] > h or dk[1] > w):
        with pytest.raises(ShapeError, match="output size"):
            layer(x)
        return
    y = layer(x)
    kernel, bias = layer.get_weights()
    expected = np.maximum(conv2d_scipy(x, kernel, bias, strides, padding, dilation_rate), 0)
    assert y.shape == expected.shape
    assert y.shape[1:3] == (
        expected_length(h, kh, strides[0], dilation_rate[0], padding),
        expected_length(w, kw, strides[1], dilation_rate[1], padding),
    )
    np.testing.assert_allclose(y, expected, rtol=RTOL, atol=1e-5)


def test_conv2d_use_bias_false_and_kernel_layout_independent_of_format(rng):
    x = rng.normal(size=(1, 5, 5, 2)).astype("float32")
    last = Conv2D(3, 3, use_bias=False, data_format="channels_last")
    first = Conv2D(3, 3, use_bias=False, data_format="channels_first")
    y_last = last(x)
    first(np.transpose(x, (0, 3, 1, 2)))
    assert [w.shape for w in first.get_weights()] == [(3, 3, 2, 3)]
    first.set_weights(last.get_weights())
    y_first = first(np.transpose(x, (0, 3, 1, 2)))
    np.testing.assert_allclose(np.transpose(y_first, (0, 2, 3, 1)), y_last, rtol=RTOL, atol=ATOL)


def test_conv2d_docs_example_channels_first():
    K.set_image_data_format("channels_first")
    model = Sequential([Conv2D(64, (3, 3), input_shape=(3, 32, 32), padding="same"), Flatten()])
    assert model.layers[0].output_shape == (None, 64, 32, 32)
    assert model.output_shape == (None, 65536)
    assert model.layers[0].count_params() == 3 * 3 * 3 * 64 + 64


def test_conv2d_docs_example_under_default_channels_last():
    """The same code under the default format reads the input as H=3, W=32, C=32."""
    model = Sequential([Conv2D(64, (3, 3), input_shape=(3, 32, 32), padding="same"), Flatten()])
    assert model.layers[0].output_shape == (None, 3, 32, 64)
    assert model.output_shape == (None, 6144)


def test_conv2d_symbolic_unknown_spatial_size():
    out = Conv2D(4, 3, strides=2, padding="same")(Input(batch_shape=(None, None, 9, 2)))
    assert out.shape == (None, None, 5, 4)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"kernel_size": 3, "strides": 2, "dilation_rate": 2}, "dilation_rate"),
        ({"kernel_size": 3, "strides": (1, 2), "dilation_rate": (2, 1)}, "dilation_rate"),
        ({"kernel_size": (3,)}, "kernel_size"),
        ({"kernel_size": (3, 3, 3)}, "kernel_size"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"kernel_size": (3, "a")}, "kernel_size"),
        ({"kernel_size": 2.5}, "kernel_size"),
        ({"kernel_size": 3, "padding": "causal"}, "padding"),
        ({"kernel_size": 3, "padding": "full"}, "padding"),
        ({"kernel_size": 3, "strides": 0}, "strides"),
        ({"kernel_size": 3, "data_format": "NHWC"}, "data_format"),
    ],
)
def test_conv2d_bad_arguments(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment) as info:
        Conv2D(4, **kwargs)
    assert "Received" in str(info.value)


@pytest.mark.parametrize(
    ("input_shape", "kwargs"),
    [
        ((3, 3, 1), {"kernel_size": 5}),
        ((4, 9, 1), {"kernel_size": (5, 3)}),
        ((6, 6, 2), {"kernel_size": 3, "dilation_rate": 3}),  # dilated kernel spans 7
    ],
)
def test_conv2d_valid_input_smaller_than_kernel_raises(input_shape, kwargs):
    """TF (Keras 2.2) and Keras 3 both refuse a negative/empty output size."""
    with pytest.raises(ShapeError, match="output size"):
        Conv2D(2, **kwargs)(Input(input_shape))
    with pytest.raises(ShapeError, match="output size"):
        Conv2D(2, **kwargs)(np.zeros((1, *input_shape), dtype="float32"))
    # 'same' padding never shrinks to nothing.
    same = Conv2D(2, padding="same", **kwargs)(np.zeros((1, *input_shape), dtype="float32"))
    assert same.shape == (1, *input_shape[:2], 2)
