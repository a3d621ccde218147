"""The NumPy reference of every convolution layer against independent expectations:
scipy correlations of zero-dilated kernels, per-channel loops for depthwise, and a
direct scatter loop for transposed convolutions (the element formula of the spec);
hypothesis over the N-d shape rules; get_config round trips."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from layerserve.errors import ShapeError
from layerserve.layers import (
    Conv1D,
    Conv1DTranspose,
    Conv2D,
    Conv2DTranspose,
    Conv3D,
    Conv3DTranspose,
    DepthwiseConv1D,
    DepthwiseConv2D,
    SeparableConv1D,
    SeparableConv2D,
)
from layerserve.serialization import keras_semantics

ATOL = 2e-5
CONV = {1: Conv1D, 2: Conv2D, 3: Conv3D}
TRANSPOSE = {1: Conv1DTranspose, 2: Conv2DTranspose, 3: Conv3DTranspose}


# ---- independent expectations ------------------------------------------------------------------


def effective(k, d):
    return (k - 1) * d + 1


def expected_pads(n, k, s, d, padding):
    """TF's rule, written out: SAME puts the odd extra zero at the end."""
    if padding == "valid":
        return 0, 0
    if padding == "causal":
        return effective(k, d) - 1, 0
    total = max((math.ceil(n / s) - 1) * s + effective(k, d) - n, 0)
    return total // 2, total - total // 2


def dilate(kernel, dilation):
    """Zero-insert a (*k, ...) kernel so that a plain correlation applies the dilation."""
    taps = kernel.shape[: len(dilation)]
    out = np.zeros(
        (
            *(effective(k, d) for k, d in zip(taps, dilation, strict=True)),
            *kernel.shape[len(dilation) :],
        )
    )
    out[tuple(slice(None, None, d) for d in dilation)] = kernel
    return out


def correlate_channel(x, kernel, strides, pads, dilation):
    """One input channel ``x (*n)`` against one kernel ``(*k)`` with scipy."""
    padded = np.pad(x.astype(np.float64), pads)
    full = signal.correlate(padded, dilate(kernel, dilation), mode="valid")
    return full[tuple(slice(None, None, s) for s in strides)]


def conv_expected(x, kernel, bias, strides, padding, dilation, groups=1):
    """x channels-last ``(N, *n, C)``; kernel ``(*k, C/groups, F)``."""
    rank = x.ndim - 2
    taps = kernel.shape[:rank]
    pads = [
        expected_pads(x.shape[1 + i], taps[i], strides[i], dilation[i], padding)
        for i in range(rank)
    ]
    c_group, filters = kernel.shape[-2:]
    f_group = filters // groups
    samples = []
    for sample in x:
        maps = []
        for f in range(filters):
            group = f // f_group
            total = sum(
                correlate_channel(
                    sample[..., group * c_group + c], kernel[..., c, f], strides, pads, dilation
                )
                for c in range(c_group)
            )
            maps.append(total + (bias[f] if bias is not None else 0.0))
        samples.append(np.stack(maps, axis=-1))
    return np.stack(samples)


def depthwise_expected(x, kernel, bias, strides, padding, dilation):
    """Output channel ``c*dm + m`` is channel c correlated with ``kernel[..., c, m]``."""
    rank = x.ndim - 2
    channels, multiplier = kernel.shape[-2:]
    pads = [
        expected_pads(x.shape[1 + i], kernel.shape[i], strides[i], dilation[i], padding)
        for i in range(rank)
    ]
    out = {}
    for c, m in itertools.product(range(channels), range(multiplier)):
        maps = [
            correlate_channel(sample[..., c], kernel[..., c, m], strides, pads, dilation)
            for sample in x
        ]
        out[c * multiplier + m] = np.stack(maps) + (
            bias[c * multiplier + m] if bias is not None else 0
        )
    return np.stack([out[i] for i in range(channels * multiplier)], axis=-1)


def deconv_length(n, k, s, d, padding, output_padding):
    """Keras's deconv_output_length, as its conv_utils writes it."""
    k = effective(k, d)
    if output_padding is None:
        return n * s + max(k - s, 0) if padding == "valid" else n * s
    pad = k // 2 if padding == "same" else 0
    return (n - 1) * s + k - 2 * pad + output_padding


def transpose_expected(x, kernel, bias, strides, padding, output_padding, dilation):
    """y[o] = b + sum over (i, t) with o = i*s + t*d - crop_before of x[i] K[t]^T."""
    rank = x.ndim - 2
    lengths, taps = x.shape[1:-1], kernel.shape[:rank]
    pads = output_padding or (None,) * rank
    out_sizes = [
        deconv_length(n, k, s, d, padding, p)
        for n, k, s, d, p in zip(lengths, taps, strides, dilation, pads, strict=True)
    ]
    before = []
    for n, k, s, d, o in zip(lengths, taps, strides, dilation, out_sizes, strict=True):
        total = (n - 1) * s + effective(k, d) - o
        before.append(max(total, 0) // 2)
    y = np.zeros((x.shape[0], *out_sizes, kernel.shape[-2]))
    for i in np.ndindex(*lengths):
        for t in np.ndindex(*taps):
            o = tuple(
                i_ * s - b + t_ * d
                for i_, t_, s, d, b in zip(i, t, strides, dilation, before, strict=True)
            )
            if all(0 <= o_ < size for o_, size in zip(o, out_sizes, strict=True)):
                y[(slice(None), *o)] += x[(slice(None), *i)] @ kernel[t].T.astype(np.float64)
    return y + (bias if bias is not None else 0.0)


# ---- helpers -----------------------------------------------------------------------------------


def built(layer, x, rng):
    """Call once to build, then draw every weight so that each one matters."""
    layer(x)
    layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
    return layer


def to_layout(x_cl, data_format):
    return np.moveaxis(x_cl, -1, 1) if data_format == "channels_first" else x_cl


def from_layout(y, data_format):
    return np.moveaxis(y, 1, -1) if data_format == "channels_first" else y


def check(layer, x_cl, expected_cl, data_format):
    x = to_layout(x_cl, data_format)
    y = layer(x)
    assert layer.compute_output_shape((None, *x.shape[1:])) == (None, *y.shape[1:])
    np.testing.assert_allclose(from_layout(y, data_format), expected_cl, rtol=1e-5, atol=ATOL)


FORMATS = ["channels_last", "channels_first"]


# ---- Conv1D / 2D / 3D --------------------------------------------------------------------------

CONV_CASES = [
    # (spatial, channels, filters, kernel, strides, padding, dilation, groups)
    ((9,), 3, 4, (3,), (1,), "causal", (2,), 1),
    ((9,), 4, 6, (2,), (2,), "causal", (1,), 2),
    ((8,), 4, 4, (3,), (3,), "same", (1,), 4),
    ((7, 6), 6, 4, (3, 2), (1, 1), "same", (2, 3), 2),
    ((7, 6), 2, 3, (2, 3), (2, 3), "valid", (1, 1), 1),
    ((4, 5, 6), 4, 2, (2, 3, 2), (1, 2, 2), "same", (1, 1, 1), 2),
    ((5, 4, 6), 2, 3, (2, 2, 3), (1, 1, 1), "valid", (2, 1, 2), 1),
]


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize(
    ("spatial", "c", "f", "kernel", "strides", "padding", "dilation", "groups"), CONV_CASES
)
def test_conv_matches_scipy(
    rng, data_format, spatial, c, f, kernel, strides, padding, dilation, groups
):
    rank = len(spatial)
    with keras_semantics("3.15.1"):  # Keras 2.2 refuses causal with channels_first
        layer = CONV[rank](
            f,
            kernel,
            strides=strides,
            padding=padding,
            dilation_rate=dilation,
            groups=groups,
            data_format=data_format,
            activation="tanh",
        )
    x = rng.normal(size=(2, *spatial, c)).astype("float32")
    built(layer, to_layout(x, data_format), rng)
    kernel_w, bias = layer.get_weights()
    assert kernel_w.shape == (*kernel, c // groups, f)
    expected = np.tanh(conv_expected(x, kernel_w, bias, strides, padding, dilation, groups))
    check(layer, x, expected, data_format)


def test_conv_softmax_reads_the_last_axis_of_the_layers_own_layout(rng):
    """channels_first: softmax runs over W, as Keras applies it to the NCHW output."""
    layer = Conv2D(3, 2, data_format="channels_first", activation="softmax", use_bias=False)
    x = rng.normal(size=(2, 4, 5, 2)).astype("float32")
    built(layer, to_layout(x, "channels_first"), rng)
    raw = np.moveaxis(
        conv_expected(x, layer.get_weights()[0], None, (1, 1), "valid", (1, 1)), -1, 1
    )
    softmax = np.exp(raw) / np.exp(raw).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(layer(to_layout(x, "channels_first")), softmax, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    rank=st.integers(1, 3),
    sizes=st.lists(st.integers(1, 8), min_size=3, max_size=3),
    kernel=st.lists(st.integers(1, 4), min_size=3, max_size=3),
    step=st.lists(st.integers(1, 3), min_size=3, max_size=3),
    dilate_instead=st.booleans(),
    padding=st.sampled_from(["valid", "same", "causal"]),
    channels_first=st.booleans(),
)
def test_conv_shape_rule_property(
    rank, sizes, kernel, step, dilate_instead, padding, channels_first
):
    """compute_output_shape follows TF's rule, equals what call returns, and 'valid' on
    an input smaller than the dilated kernel raises."""
    if padding == "causal":
        rank = 1
    sizes, kernel, step = sizes[:rank], tuple(kernel[:rank]), tuple(step[:rank])
    strides, dilation = ((1,) * rank, step) if dilate_instead else (step, (1,) * rank)
    data_format = "channels_first" if channels_first else "channels_last"
    with keras_semantics("3.15.1"):
        layer = CONV[rank](
            2,
            kernel,
            strides=strides,
            padding=padding,
            dilation_rate=dilation,
            data_format=data_format,
        )
    shape = (None, 3, *sizes) if channels_first else (None, *sizes, 3)
    too_small = any(n < effective(k, d) for n, k, d in zip(sizes, kernel, dilation, strict=True))
    if padding == "valid" and too_small:
        with pytest.raises(ShapeError, match="output size"):
            layer.compute_output_shape(shape)
        return
    out = tuple(
        math.ceil(n / s) if padding != "valid" else (n - effective(k, d)) // s + 1
        for n, k, s, d in zip(sizes, kernel, strides, dilation, strict=True)
    )
    expected = (None, 2, *out) if channels_first else (None, *out, 2)
    assert layer.compute_output_shape(shape) == expected
    assert layer(np.zeros((1, *shape[1:]), "float32")).shape == (1, *expected[1:])
    blank = (None,) * rank
    unknown = (None, 3, *blank) if channels_first else (None, *blank, 3)
    assert layer.compute_output_shape(unknown) == (
        (None, 2, *blank) if channels_first else (None, *blank, 2)
    )


# ---- DepthwiseConv / SeparableConv -------------------------------------------------------------

DEPTHWISE_CASES = [
    # (spatial, channels, multiplier, kernel, strides, padding, dilation)
    ((9,), 3, 2, (3,), (1,), "same", (2,)),
    ((8,), 2, 3, (2,), (3,), "valid", (1,)),
    ((7, 6), 3, 2, (3, 2), (2, 1), "same", (1, 1)),
    ((7, 8), 2, 1, (2, 3), (1, 1), "valid", (3, 2)),
]


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize(
    ("spatial", "c", "dm", "kernel", "strides", "padding", "dilation"), DEPTHWISE_CASES
)
def test_depthwise_matches_per_channel_loops(
    rng, data_format, spatial, c, dm, kernel, strides, padding, dilation
):
    cls = DepthwiseConv1D if len(spatial) == 1 else DepthwiseConv2D
    layer = cls(
        kernel,
        strides=strides,
        padding=padding,
        depth_multiplier=dm,
        dilation_rate=dilation,
        data_format=data_format,
        activation="relu",
    )
    x = rng.normal(size=(2, *spatial, c)).astype("float32")
    built(layer, to_layout(x, data_format), rng)
    kernel_w, bias = layer.get_weights()
    assert (kernel_w.shape, bias.shape) == ((*kernel, c, dm), (c * dm,))
    expected = np.maximum(depthwise_expected(x, kernel_w, bias, strides, padding, dilation), 0)
    check(layer, x, expected, data_format)


SEPARABLE_CASES = [
    # (spatial, channels, filters, multiplier, kernel, strides, padding, dilation)
    ((9,), 3, 4, 2, (3,), (2,), "same", (1,)),
    ((9,), 2, 3, 1, (2,), (1,), "causal", (3,)),
    ((7, 6), 3, 5, 2, (3, 2), (2, 1), "valid", (1, 1)),
    ((7, 8), 2, 3, 3, (2, 3), (1, 1), "same", (2, 2)),
]


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize(
    ("spatial", "c", "f", "dm", "kernel", "strides", "padding", "dilation"), SEPARABLE_CASES
)
def test_separable_is_depthwise_then_pointwise_then_bias(
    rng, data_format, spatial, c, f, dm, kernel, strides, padding, dilation
):
    cls = SeparableConv1D if len(spatial) == 1 else SeparableConv2D
    with keras_semantics("2.15.0"):  # tf.keras: causal SeparableConv1D exists
        layer = cls(
            f,
            kernel,
            strides=strides,
            padding=padding,
            depth_multiplier=dm,
            dilation_rate=dilation,
            data_format=data_format,
            activation="elu",
        )
    x = rng.normal(size=(2, *spatial, c)).astype("float32")
    built(layer, to_layout(x, data_format), rng)
    depthwise, pointwise, bias = layer.get_weights()
    assert pointwise.shape == ((1,) * len(spatial) + (c * dm, f))
    middle = depthwise_expected(x, depthwise, None, strides, padding, dilation)
    raw = np.einsum("...c,cf->...f", middle, pointwise.reshape(c * dm, f)) + bias
    check(layer, x, np.where(raw > 0, raw, np.expm1(raw)), data_format)


def test_keras3_depthwise_and_separable_allow_strides_with_dilation(rng):
    """Keras 3 (JAX) computes them: windows start at o*s, taps step by d."""
    with keras_semantics("3.15.1"):
        depthwise = DepthwiseConv2D(3, strides=2, dilation_rate=2, padding="same")
        separable = SeparableConv1D(2, 3, strides=2, dilation_rate=(2,), padding="same")
    x = rng.normal(size=(2, 9, 8, 2)).astype("float32")
    built(depthwise, x, rng)
    expected = depthwise_expected(x, *depthwise.get_weights(), (2, 2), "same", (2, 2))
    check(depthwise, x, expected, "channels_last")
    x1 = rng.normal(size=(2, 9, 2)).astype("float32")
    built(separable, x1, rng)
    dw, pw, bias = separable.get_weights()
    middle = depthwise_expected(x1, dw, None, (2,), "same", (2,))
    check(separable, x1, middle @ pw[0] + bias, "channels_last")


# ---- Conv1DTranspose / 2D / 3D -----------------------------------------------------------------

TRANSPOSE_CASES = [
    # (spatial, channels, filters, kernel, strides, padding, output_padding, dilation)
    ((5,), 3, 2, (3,), (2,), "same", None, (1,)),
    ((4,), 2, 3, (1,), (3,), "valid", None, (1,)),  # keff < s: bias-only tail
    ((4,), 2, 2, (4,), (3,), "same", (2,), (1,)),
    ((4,), 2, 2, (3,), (1,), "same", None, (2,)),
    ((3, 4), 2, 3, (3, 2), (2, 3), "valid", (1, 2), (1, 1)),
    ((3, 4), 2, 2, (2, 3), (2, 2), "same", None, (1, 1)),
    ((3, 3), 2, 2, (3, 2), (1, 1), "valid", None, (2, 3)),
    ((2, 3, 2), 2, 2, (2, 3, 2), (2, 1, 2), "same", (1, 0, 1), (1, 1, 1)),
]


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize(
    ("spatial", "c", "f", "kernel", "strides", "padding", "output_padding", "dilation"),
    TRANSPOSE_CASES,
)
def test_conv_transpose_matches_the_scatter_formula(
    rng, data_format, spatial, c, f, kernel, strides, padding, output_padding, dilation
):
    with keras_semantics("3.15.1"):  # Keras 2 ignores dilation in Conv3DTranspose
        layer = TRANSPOSE[len(spatial)](
            f,
            kernel,
            strides=strides,
            padding=padding,
            output_padding=output_padding,
            dilation_rate=dilation,
            data_format=data_format,
        )
    x = rng.normal(size=(2, *spatial, c)).astype("float32")
    built(layer, to_layout(x, data_format), rng)
    kernel_w, bias = layer.get_weights()
    assert kernel_w.shape == (*kernel, f, c)  # output channels before input channels
    expected = transpose_expected(x, kernel_w, bias, strides, padding, output_padding, dilation)
    check(layer, x, expected, data_format)


@settings(max_examples=40, deadline=None)
@given(
    rank=st.integers(1, 2),
    sizes=st.lists(st.integers(1, 5), min_size=2, max_size=2),
    kernel=st.lists(st.integers(1, 4), min_size=2, max_size=2),
    step=st.lists(st.integers(1, 3), min_size=2, max_size=2),
    dilate_instead=st.booleans(),
    padding=st.sampled_from(["valid", "same"]),
    pad_fraction=st.none() | st.lists(st.floats(0, 0.99), min_size=2, max_size=2),
    seed=st.integers(0, 1000),
)
def test_conv_transpose_sizes_and_values_property(
    rank, sizes, kernel, step, dilate_instead, padding, pad_fraction, seed
):
    sizes, kernel, step = tuple(sizes[:rank]), tuple(kernel[:rank]), tuple(step[:rank])
    strides, dilation = ((1,) * rank, step) if dilate_instead else (step, (1,) * rank)
    output_padding = (
        None
        if pad_fraction is None
        else tuple(int(p * s) for p, s in zip(pad_fraction, strides, strict=False))
    )
    with keras_semantics("3.15.1"):
        layer = TRANSPOSE[rank](
            2,
            kernel,
            strides=strides,
            padding=padding,
            output_padding=output_padding,
            dilation_rate=dilation,
        )
    gen = np.random.default_rng(seed)
    x = gen.normal(size=(1, *sizes, 2)).astype("float32")
    built(layer, x, gen)
    out = tuple(
        deconv_length(n, k, s, d, padding, None if output_padding is None else output_padding[i])
        for i, (n, k, s, d) in enumerate(zip(sizes, kernel, strides, dilation, strict=True))
    )
    assert layer.compute_output_shape((None, *sizes, 2)) == (None, *out, 2)
    assert layer.compute_output_shape((None, *(None,) * rank, 2)) == (None, *(None,) * rank, 2)
    expected = transpose_expected(
        x, *layer.get_weights(), strides, padding, output_padding, dilation
    )
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=ATOL)
