"""CenterCrop, Resizing and RandomCrop against independent references: a per-pixel loop
of TensorFlow's half-pixel bilinear rule (float64), the nearest rules written out per
pixel, and Keras's aspect-ratio boxes computed by hand."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerserve.errors import NotSupportedError
from layerserve.layers import CenterCrop, RandomCrop, Resizing
from layerserve.serialization import keras_semantics

TF_KERAS, KERAS3 = "2.21.0", "3.15.1"
CF = "channels_first"


def images(shape, seed=0, dtype="float32"):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, 256, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def bilinear_loop(x, height, width):
    """NHWC, float64: each output pixel interpolates the four neighbours of its half-pixel
    source ``(o + 0.5) * in / out - 0.5``, neighbours outside the image clamped."""
    n, in_h, in_w, c = x.shape
    out = np.zeros((n, height, width, c))

    def taps(o, size_in, size_out):
        source = (o + 0.5) * size_in / size_out - 0.5
        low = math.floor(source)
        frac = source - low
        return min(max(low, 0), size_in - 1), min(max(low + 1, 0), size_in - 1), frac

    for i in range(height):
        top, bottom, fy = taps(i, in_h, height)
        for j in range(width):
            left, right, fx = taps(j, in_w, width)
            upper = x[:, top, left] * (1 - fx) + x[:, top, right] * fx
            lower = x[:, bottom, left] * (1 - fx) + x[:, bottom, right] * fx
            out[:, i, j] = upper * (1 - fy) + lower * fy
    return out


def nearest_loop(x, height, width, tensorflow):
    """NHWC: source ``floor((o + 0.5) * in / out)``; TensorFlow multiplies by the float32
    ratio, JAX computes the quotient exactly."""
    n, in_h, in_w, c = x.shape

    def source(o, size_in, size_out):
        if tensorflow:
            ratio = np.float32(size_in) / np.float32(size_out)
            return min(int(np.floor(np.float32(o + 0.5) * ratio)), size_in - 1)
        return min(math.floor((o + 0.5) * size_in / size_out), size_in - 1)

    rows = [source(i, in_h, height) for i in range(height)]
    columns = [source(j, in_w, width) for j in range(width)]
    return x[:, rows][:, :, columns]


def to_cf(x):
    return np.transpose(x, (0, 3, 1, 2))


# ---- CenterCrop ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "target", "box"),
    [((7, 6), (4, 3), (1, 1)), ((6, 6), (3, 5), (1, 0)), ((5, 8), (5, 8), (0, 0))],
)
def test_center_crop_drops_the_odd_pixel_at_the_end(size, target, box):
    x = images((2, *size, 3))
    out = CenterCrop(*target)(x)
    top, left = box
    np.testing.assert_array_equal(out, x[:, top : top + target[0], left : left + target[1]])
    with keras_semantics(KERAS3):
        cf = CenterCrop(*target, data_format=CF)
    np.testing.assert_array_equal(cf(to_cf(x)), to_cf(out))


@pytest.mark.parametrize(
    ("size", "target", "window"),
    [
        # (top, height, left, width): height min(H, W*th//tw), width min(W, H*tw//th)
        ((5, 6), (7, 4), (0, 5, 2, 2)),
        ((3, 9), (6, 6), (0, 3, 3, 3)),
        ((6, 2), (4, 3), (2, 2, 0, 2)),
    ],
)
def test_center_crop_upsizes_smaller_images_with_smart_resize(size, target, window):
    x = images((2, *size, 2), seed=1).astype("float64")
    top, height, left, width = window
    expected = bilinear_loop(x[:, top : top + height, left : left + width], *target)
    np.testing.assert_allclose(CenterCrop(*target)(x), expected, rtol=1e-5, atol=1e-5)
    assert CenterCrop(*target)(x.astype("uint8")).dtype == np.float32


# ---- Resizing ------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(
    in_h=st.integers(1, 9),
    in_w=st.integers(1, 9),
    out_h=st.integers(1, 12),
    out_w=st.integers(1, 12),
    channels_first=st.booleans(),
)
def test_bilinear_resize_equals_the_per_pixel_loop(in_h, in_w, out_h, out_w, channels_first):
    x = images((2, in_h, in_w, 2), seed=in_h * 13 + in_w)
    expected = bilinear_loop(x.astype("float64"), out_h, out_w)
    with keras_semantics(KERAS3):
        layer = Resizing(out_h, out_w, data_format=CF if channels_first else None)
    out = layer(to_cf(x) if channels_first else x)
    np.testing.assert_allclose(
        out, to_cf(expected) if channels_first else expected, rtol=1e-5, atol=1e-5
    )


@settings(max_examples=40, deadline=None)
@given(in_h=st.integers(1, 30), out_h=st.integers(1, 30), keras3=st.booleans())
def test_nearest_resize_rules(in_h, out_h, keras3):
    x = images((1, in_h, 2, 1), seed=in_h)
    expected = nearest_loop(x, out_h, 2, tensorflow=not keras3)
    with keras_semantics(KERAS3 if keras3 else TF_KERAS):
        layer = Resizing(out_h, 2, interpolation="nearest")
    if keras3 and not np.array_equal(expected, nearest_loop(x, out_h, 2, tensorflow=True)):
        with pytest.raises(NotSupportedError, match="different pixels on Keras 3's TensorFlow"):
            layer(x)  # the two Keras 3 backends disagree
    else:
        np.testing.assert_array_equal(layer(x), expected)


def test_tensorflow_nearest_rule_differs_at_14_to_23():
    x = np.arange(14, dtype="float32").reshape(1, 14, 1, 1)
    out = Resizing(23, 1, interpolation="nearest")(x)[0, :, 0, 0]
    assert out[11] == 6  # the exact source is (11.5 * 14 / 23) = 7: TF's float32 ratio rounds down


@pytest.mark.parametrize(
    ("size", "target", "box"),
    [
        ((7, 5), (4, 6), (2, 3, 0, 5)),  # crop_h = min(7, 5*4//6 = 3): rows 2..4
        ((5, 9), (4, 4), (0, 5, 2, 5)),  # crop_w = min(9, 5*4//4 = 5): columns 2..6
        ((1, 9), (5, 1), (0, 1, 4, 1)),  # at least one pixel: max(min(9, 1*1//5), 1)
    ],
)
def test_crop_to_aspect_ratio_boxes(size, target, box):
    x = images((2, *size, 3), seed=2)
    top, height, left, width = box
    expected = bilinear_loop(
        x[:, top : top + height, left : left + width].astype("float64"), *target
    )
    out = Resizing(*target, crop_to_aspect_ratio=True)(x)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("size", "target", "rows", "columns"),
    [
        # pad_w = 7*6//4 = 10: (10 - 5)//2 = 2 columns each side, 9 wide (one short)
        ((7, 5), (4, 6), 0, 2),
        # pad_h = 8*6//4 = 12: (12 - 3)//2 = 4 rows each side, 11 high
        ((3, 8), (6, 4), 4, 0),
    ],
)
def test_pad_to_aspect_ratio_bands(size, target, rows, columns):
    x = images((2, *size, 3), seed=3)
    padded = np.pad(x, ((0, 0), (rows, rows), (columns, columns), (0, 0)), constant_values=0.5)
    with keras_semantics(KERAS3):
        layer = Resizing(*target, pad_to_aspect_ratio=True, fill_value=0.5)
    np.testing.assert_allclose(
        layer(x), bilinear_loop(padded.astype("float64"), *target), rtol=1e-5, atol=1e-5
    )


def test_antialias_changes_nothing_when_no_axis_shrinks():
    x = images((2, 4, 5, 3), seed=4)
    with keras_semantics(KERAS3):
        smooth = Resizing(7, 5, antialias=True)(x)
    np.testing.assert_array_equal(smooth, Resizing(7, 5)(x))


@pytest.mark.parametrize(("version", "dtype"), [(KERAS3, np.uint8), (TF_KERAS, np.float32)])
def test_integer_images_nearest_dtype(version, dtype):
    x = images((2, 4, 5, 1), dtype="uint8")
    with keras_semantics(version):
        out = Resizing(6, 3, interpolation="nearest")(x)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, nearest_loop(x, 6, 3, tensorflow=version == TF_KERAS))


def test_resizing_config_round_trip():
    with keras_semantics(KERAS3):
        layer = Resizing(
            3,
            4,
            "nearest",
            pad_to_aspect_ratio=True,
            fill_value=2.0,
            antialias=True,
            data_format=CF,
        )
        assert Resizing.from_config(layer.get_config()).get_config() == layer.get_config()
    with keras_semantics(TF_KERAS):
        assert Resizing(3, 4).data_format == "channels_last"  # tf.keras: never the global
    assert layer.compute_output_shape((None, 2, 8, 9)) == (None, 2, 3, 4)


# ---- RandomCrop ----------------------------------------------------------------------------
def test_random_crop_inference_per_version():
    x = images((2, 6, 5, 2), seed=5)
    with keras_semantics(TF_KERAS):
        resized = RandomCrop(3, 4)(x)  # smart_resize: window 6*4//3? min(6, 5*3//4 = 3) rows
    expected = bilinear_loop(x[:, 1:4].astype("float64"), 3, 4)
    np.testing.assert_allclose(resized, expected, rtol=1e-5, atol=1e-5)
    with keras_semantics(KERAS3):
        layer = RandomCrop(3, 4)
    np.testing.assert_array_equal(layer(x), x)  # Keras 3 returns the image unchanged
    assert layer.compute_output_shape((None, 6, 5, 2)) == (None, 6, 5, 2)
