"""The NumPy references of ZeroPadding, Cropping and UpSampling against expectations
written here: zero arrays filled by assignment, index lists, ``index // factor`` gathers
and a per-pixel bilinear formula that clamps the source coordinate (the ONNX/OpenCV
form, not the reference's clamped-neighbour form). Plus output shapes, configs and the
version rules (Keras 2 channels_last ZeroPadding1D, bilinear sample positions, legacy
keywords)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerserve import backend as K
from layerserve.errors import NotSupportedError
from layerserve.layers import (
    Cropping1D,
    Cropping2D,
    Cropping3D,
    Input,
    UpSampling1D,
    UpSampling2D,
    UpSampling3D,
    ZeroPadding1D,
    ZeroPadding2D,
    ZeroPadding3D,
)
from layerserve.models import Model, model_from_json
from layerserve.serialization import keras_semantics

CF, CL = "channels_first", "channels_last"
PADDING = {1: ZeroPadding1D, 2: ZeroPadding2D, 3: ZeroPadding3D}
CROPPING = {1: Cropping1D, 2: Cropping2D, 3: Cropping3D}
UPSAMPLING = {1: UpSampling1D, 2: UpSampling2D, 3: UpSampling3D}


# ---- independent expectations ---------------------------------------------------------


def spatial(ndim, data_format):
    return list(range(2, ndim)) if data_format == CF else list(range(1, ndim - 1))


def padded(x, pairs, data_format):
    """A zero array of the grown shape with ``x`` assigned at the offsets."""
    axes = spatial(x.ndim, data_format)
    shape = list(x.shape)
    where = [slice(None)] * x.ndim
    for axis, (before, after) in zip(axes, pairs, strict=True):
        shape[axis] += before + after
        where[axis] = slice(before, before + x.shape[axis])
    out = np.zeros(shape, dtype=x.dtype)
    out[tuple(where)] = x
    return out


def cropped(x, pairs, data_format):
    for axis, (before, after) in zip(spatial(x.ndim, data_format), pairs, strict=True):
        x = np.take(x, list(range(before, x.shape[axis] - after)), axis=axis)
    return x


def repeated(x, factors, data_format):
    for axis, factor in zip(spatial(x.ndim, data_format), factors, strict=True):
        x = np.take(x, np.arange(x.shape[axis] * factor) // factor, axis=axis)
    return x


def bilinear(x_nhwc, fh, fw, half_pixel):
    """Per output pixel, in float64: the source coordinate (half-pixel or ``dst/f``),
    clamped into the image, between its floor and the next row/column."""
    n, h, w, c = x_nhwc.shape
    x = x_nhwc.astype(np.float64)
    out = np.zeros((n, h * fh, w * fw, c))

    def source(i, factor, size):
        s = (i + 0.5) / factor - 0.5 if half_pixel else i / factor
        s = min(max(s, 0.0), size - 1.0)
        low = math.floor(s)
        return low, min(low + 1, size - 1), s - low

    for i in range(h * fh):
        y0, y1, wy = source(i, fh, h)
        for j in range(w * fw):
            x0, x1, wx = source(j, fw, w)
            top = (1 - wx) * x[:, y0, x0] + wx * x[:, y0, x1]
            bottom = (1 - wx) * x[:, y1, x0] + wx * x[:, y1, x1]
            out[:, i, j] = (1 - wy) * top + wy * bottom
    return out


def channels_first(x):
    return np.moveaxis(x, -1, 1)


def check_shape_rule(layer, x, y):
    """compute_output_shape equals what call returns, and keeps unknown sizes unknown."""
    assert layer.compute_output_shape((None, *x.shape[1:])) == (None, *y.shape[1:])
    unknown = layer.compute_output_shape((None,) * x.ndim)
    assert unknown == (None,) * x.ndim


# ---- ZeroPadding ----------------------------------------------------------------------

PADDING_FORMS = [
    # (rank, padding argument, the (before, after) pairs it means)
    (1, 2, ((2, 2),)),
    (1, (0, 3), ((0, 3),)),
    (1, [3, 1], ((3, 1),)),
    (2, 1, ((1, 1), (1, 1))),
    (2, (2, 0), ((2, 2), (0, 0))),
    (2, ((1, 2), (3, 0)), ((1, 2), (3, 0))),
    (2, ((0, 1), 2), ((0, 1), (2, 2))),
    (3, 1, ((1, 1),) * 3),
    (3, (1, 0, 2), ((1, 1), (0, 0), (2, 2))),
    (3, ((1, 0), (0, 2), (2, 1)), ((1, 0), (0, 2), (2, 1))),
]


@pytest.mark.parametrize("data_format", [CL, CF])
@pytest.mark.parametrize(("rank", "argument", "pairs"), PADDING_FORMS)
def test_zero_padding_equals_assignment_into_zeros(rng, rank, argument, pairs, data_format):
    with keras_semantics("3.15.1"):  # Keras 3's ZeroPadding1D takes a data_format
        layer = PADDING[rank](argument, data_format=data_format)
    x = rng.normal(size=(2, *range(3, 3 + rank), 2)).astype("float32")
    x = channels_first(x) if data_format == CF else x
    y = layer(x)
    assert layer.padding == pairs
    np.testing.assert_array_equal(y, padded(x, pairs, data_format))
    assert y.dtype == x.dtype
    check_shape_rule(layer, x, y)


def test_zero_padding_keeps_integer_dtype_and_empty_batch():
    x = np.arange(2 * 3 * 2, dtype="int64").reshape(2, 3, 2)
    y = ZeroPadding1D((1, 2))(x)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, padded(x, ((1, 2),), CL))
    assert ZeroPadding2D(1)(np.zeros((0, 2, 3, 1), "float32")).shape == (0, 4, 5, 1)


def test_zero_padding1d_data_format_by_keras_version():
    """Keras 2's ZeroPadding1D is always channels_last; Keras 3 resolves None to the
    global image_data_format at construction."""
    K.set_image_data_format(CF)
    with keras_semantics("2.2.4"):
        assert ZeroPadding1D(1).data_format == CL
    with keras_semantics("2.21.0"):
        assert ZeroPadding1D(1).data_format == CL
    with keras_semantics("3.15.1"):
        assert ZeroPadding1D(1).data_format == CF
    assert ZeroPadding2D(1).data_format == CF


def test_keras1_padding_dict_reads_as_keras22():
    layer = ZeroPadding2D({"top_pad": 1, "right_pad": 2})
    assert layer.padding == ((1, 0), (0, 2))


# ---- Cropping -------------------------------------------------------------------------

CROPPING_FORMS = [
    (1, 1, ((1, 1),)),
    (1, (2, 0), ((2, 0),)),
    (1, (0, 3), ((0, 3),)),
    (2, 1, ((1, 1), (1, 1))),
    (2, (1, 0), ((1, 1), (0, 0))),
    (2, ((0, 2), (1, 0)), ((0, 2), (1, 0))),
    (2, ((2, 1), 0), ((2, 1), (0, 0))),
    (3, 1, ((1, 1),) * 3),
    (3, (0, 1, 2), ((0, 0), (1, 1), (2, 2))),
    (3, ((1, 0), (0, 2), (1, 1)), ((1, 0), (0, 2), (1, 1))),
]


def with_formats(rows):
    """Each row with both data formats, except rank 1 (no data_format in any Keras)."""
    return [(*row, f) for row in rows for f in ((CL,) if row[0] == 1 else (CL, CF))]


@pytest.mark.parametrize(("rank", "argument", "pairs", "data_format"), with_formats(CROPPING_FORMS))
def test_cropping_equals_index_lists(rng, rank, argument, pairs, data_format):
    kwargs = {} if rank == 1 else {"data_format": data_format}
    layer = CROPPING[rank](argument, **kwargs)
    x = rng.normal(size=(2, *range(6, 6 + rank), 3)).astype("float32")
    x = channels_first(x) if data_format == CF else x
    y = layer(x)
    assert layer.cropping == pairs
    np.testing.assert_array_equal(y, cropped(x, pairs, data_format))
    check_shape_rule(layer, x, y)


def test_cropping1d_on_variable_length_sequences(rng):
    model = Model(i := Input((None, 3)), Cropping1D((1, 2))(i))
    assert model.output_shape == (None, None, 3)
    for steps in (4, 9):
        x = rng.normal(size=(2, steps, 3)).astype("float32")
        np.testing.assert_array_equal(model.predict(x), x[:, 1 : steps - 2])


def test_cropping2d_default_crops_nothing(rng):
    x = rng.normal(size=(2, 3, 4, 2)).astype("float32")
    np.testing.assert_array_equal(Cropping2D()(x), x)


# ---- UpSampling nearest ---------------------------------------------------------------


NEAREST_SIZES = [
    (1, 3, (3,)),
    (1, 1, (1,)),
    (2, 2, (2, 2)),
    (2, (3, 1), (3, 1)),
    (3, 2, (2, 2, 2)),
    (3, (1, 3, 2), (1, 3, 2)),
]


@pytest.mark.parametrize(("rank", "size", "factors", "data_format"), with_formats(NEAREST_SIZES))
def test_nearest_upsampling_gathers_index_over_factor(rng, rank, size, factors, data_format):
    kwargs = {} if rank == 1 else {"data_format": data_format}
    layer = UPSAMPLING[rank](size, **kwargs)
    x = rng.normal(size=(2, *range(2, 2 + rank), 3)).astype("float32")
    x = channels_first(x) if data_format == CF else x
    y = layer(x)
    assert layer.size == factors
    np.testing.assert_array_equal(y, repeated(x, factors, data_format))
    check_shape_rule(layer, x, y)


def test_nearest_upsampling_keeps_any_dtype():
    x = np.arange(12, dtype="int32").reshape(1, 2, 3, 2)
    y = UpSampling2D((2, 1))(x)
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, repeated(x, (2, 1), CL))


# ---- UpSampling2D bilinear ------------------------------------------------------------

BILINEAR_CASES = [(3, 4, 2, 3), (5, 2, 3, 1), (1, 1, 4, 2), (4, 3, 1, 1), (2, 6, 5, 2)]


@pytest.mark.parametrize(
    ("version", "half_pixel"),
    [
        ("2.2.3", False),
        ("2.2.4", False),
        ("2.3.1", False),
        ("2.4.0", True),
        ("2.21.0", True),
        ("3.0.0", True),
        ("3.15.1", True),
    ],
)
@pytest.mark.parametrize("data_format", [CL, CF])
@pytest.mark.parametrize(("h", "w", "fh", "fw"), BILINEAR_CASES)
def test_bilinear_equals_per_pixel_formula(rng, version, half_pixel, data_format, h, w, fh, fw):
    with keras_semantics(version):
        layer = UpSampling2D((fh, fw), data_format=data_format, interpolation="bilinear")
    assert layer.coordinates == ("half_pixel" if half_pixel else "asymmetric")
    x_nhwc = rng.normal(size=(2, h, w, 3)).astype("float32")
    expected = bilinear(x_nhwc, fh, fw, half_pixel)
    x = channels_first(x_nhwc) if data_format == CF else x_nhwc
    y = layer(x)
    expected = channels_first(expected) if data_format == CF else expected
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    check_shape_rule(layer, x, y)


def test_bilinear_half_pixel_and_asymmetric_differ():
    """Reading a Keras 2.2 file with tf.keras's positions would shift the image."""
    x = np.arange(3, dtype="float32").reshape(1, 3, 1, 1)
    with keras_semantics("2.2.4"):
        old = UpSampling2D((2, 1), interpolation="bilinear")(x)[0, :, 0, 0]
    with keras_semantics("3.15.1"):
        new = UpSampling2D((2, 1), interpolation="bilinear")(x)[0, :, 0, 0]
    np.testing.assert_allclose(old, [0, 0.5, 1, 1.5, 2, 2])
    np.testing.assert_allclose(new, [0, 0.25, 0.75, 1.25, 1.75, 2])


def test_bilinear_of_integers_and_float64_computes_in_float32():
    x = np.arange(6, dtype="int32").reshape(1, 2, 3, 1)
    layer = UpSampling2D(2, interpolation="bilinear")
    y = layer(x)
    assert y.dtype == np.float32 and layer.output_dtype("int32") == "float32"
    np.testing.assert_allclose(y, bilinear(x.astype("float32"), 2, 2, False), atol=1e-6)
    # tf.image.resize answers float32 for every input dtype (float64 too)
    x64 = np.linspace(0, 1, 6).reshape(1, 2, 3, 1)
    y64 = layer(x64)
    assert y64.dtype == np.float32 and layer.output_dtype("float64") == "float32"
    np.testing.assert_array_equal(y64, layer(x64.astype("float32")))


def test_keras224_file_with_bilinear_upsampling_uses_tf1_positions(rng):
    """A multi-backend Keras 2.2.4 model JSON (no Keras 2.2 install exists to write one)."""
    document = """{"class_name": "Sequential", "keras_version": "2.2.4",
      "backend": "tensorflow", "config": {"name": "sequential_1", "layers": [
      {"class_name": "UpSampling2D", "config": {"name": "up_sampling2d_1",
       "trainable": true, "batch_input_shape": [null, 3, 4, 2], "dtype": "float32",
       "size": [2, 3], "data_format": "channels_last", "interpolation": "bilinear"}}]}}"""
    model = model_from_json(document)
    x = rng.normal(size=(2, 3, 4, 2)).astype("float32")
    np.testing.assert_allclose(model.predict(x), bilinear(x, 2, 3, False), atol=1e-6)
    # tf.keras inside TensorFlow 1.13-2.3 writes "2.2.4-tf": its bilinear positions
    # depend on the TensorFlow release, which the file does not record.
    with pytest.raises(NotSupportedError, match="Re-save the model with TensorFlow 2.4"):
        model_from_json(document.replace('"2.2.4"', '"2.2.4-tf"'))


# ---- legacy keywords and configs ------------------------------------------------------


@pytest.mark.parametrize(
    ("dim_ordering", "expected"), [("tf", CL), ("th", CF), ("default", CL), (CF, CF)]
)
@pytest.mark.parametrize(
    "cls", [ZeroPadding2D, ZeroPadding3D, Cropping2D, Cropping3D, UpSampling2D, UpSampling3D]
)
def test_keras22_dim_ordering_maps_to_data_format(cls, dim_ordering, expected):
    layer = cls(dim_ordering=dim_ordering)
    assert layer.data_format == expected
    assert "dim_ordering" not in layer.get_config()


def test_keras22_upsampling1d_length_is_size():
    assert UpSampling1D(length=4).size == (4,)


CONFIG_LAYERS = [
    lambda: ZeroPadding1D((1, 2)),
    lambda: ZeroPadding2D(((0, 1), 2), data_format=CF),
    lambda: ZeroPadding3D(2),
    lambda: Cropping1D((0, 2)),
    lambda: Cropping2D(((1, 0), (0, 2))),
    lambda: Cropping3D((1, 0, 1), data_format=CF),
    lambda: UpSampling1D(3),
    lambda: UpSampling2D((2, 3), data_format=CF, interpolation="bilinear"),
    lambda: UpSampling3D((1, 2, 1)),
]


@pytest.mark.parametrize("build", CONFIG_LAYERS)
def test_get_config_round_trips(rng, build):
    layer = build()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    ndim = layer.rank + 2
    x = rng.normal(size=(2, *([5] * (ndim - 1)))).astype("float32")
    np.testing.assert_array_equal(clone(x), layer(x))


def test_configs_use_the_keras_keys():
    assert ZeroPadding1D((1, 2)).get_config()["padding"] == [1, 2]
    assert ZeroPadding2D(1).get_config()["padding"] == [[1, 1], [1, 1]]
    assert "data_format" not in Cropping1D().get_config()
    assert Cropping1D(3).get_config()["cropping"] == [3, 3]
    assert UpSampling1D().get_config()["size"] == 2
    assert "data_format" not in UpSampling1D().get_config()
    assert UpSampling2D().get_config()["interpolation"] == "nearest"
    assert UpSampling2D(interpolation="BILINEAR").interpolation == "bilinear"


# ---- properties over shapes -----------------------------------------------------------

pairs = st.tuples(st.integers(0, 3), st.integers(0, 3))


@settings(max_examples=40, deadline=None)
@given(
    rank=st.integers(1, 3),
    sizes=st.lists(st.integers(1, 6), min_size=3, max_size=3),
    channels=st.integers(1, 3),
    pads=st.lists(pairs, min_size=3, max_size=3),
    crops=st.lists(pairs, min_size=3, max_size=3),
    factors=st.lists(st.integers(1, 3), min_size=3, max_size=3),
    first=st.booleans(),
)
def test_padding_cropping_upsampling_properties(rank, sizes, channels, pads, crops, factors, first):
    data_format = CF if first and rank > 1 else CL
    kwargs = {} if rank == 1 else {"data_format": data_format}
    shape = (2, *sizes[:rank], channels)
    x = np.random.default_rng(rank).normal(size=shape).astype("float32")
    x = channels_first(x) if data_format == CF else x
    pad_pairs, crop_pairs = tuple(pads[:rank]), tuple(crops[:rank])

    def argument(pairs):  # rank 1 takes one pair
        return pairs[0] if rank == 1 else pairs

    grown = PADDING[rank](argument(pad_pairs), **kwargs)(x)
    np.testing.assert_array_equal(grown, padded(x, pad_pairs, data_format))
    # Cropping what was padded gives the input back.
    np.testing.assert_array_equal(CROPPING[rank](argument(pad_pairs), **kwargs)(grown), x)
    up = UPSAMPLING[rank](tuple(factors[:rank]), **kwargs)(x)
    np.testing.assert_array_equal(up, repeated(x, factors[:rank], data_format))
    axes = spatial(x.ndim, data_format)
    if all(x.shape[a] > sum(p) for a, p in zip(axes, crop_pairs, strict=True)):
        layer = CROPPING[rank](argument(crop_pairs), **kwargs)
        y = layer(x)
        np.testing.assert_array_equal(y, cropped(x, crop_pairs, data_format))
        check_shape_rule(layer, x, y)


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 5),
    w=st.integers(1, 5),
    fh=st.integers(1, 4),
    fw=st.integers(1, 4),
    keras3=st.booleans(),
)
def test_bilinear_property(h, w, fh, fw, keras3):
    with keras_semantics("3.15.1" if keras3 else "2.2.4"):
        layer = UpSampling2D((fh, fw), interpolation="bilinear")
    x = np.random.default_rng(h * 7 + w).normal(size=(1, h, w, 2)).astype("float32")
    y = layer(x)
    np.testing.assert_allclose(y, bilinear(x, fh, fw, keras3), rtol=1e-6, atol=1e-6)
    # Interpolation never leaves the range of its neighbours.
    assert y.min() >= x.min() - 1e-6 and y.max() <= x.max() + 1e-6
