"""The NumPy pooling reference against a second implementation: explicit loops over the
output positions, each reading the real cells of its window (TF's SAME rule written out
here), and hand formulas for the global and masked means."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import layerserve.layers as L
from layerserve.errors import ShapeError
from layerserve.serialization import keras_semantics

RTOL, ATOL = 1e-5, 1e-6
WINDOWED = {
    (mode, rank): getattr(L, f"{'Max' if mode == 'max' else 'Average'}Pooling{rank}D")
    for mode in ("max", "average")
    for rank in (1, 2, 3)
}
GLOBAL = {
    (mode, rank): getattr(L, f"Global{'Max' if mode == 'max' else 'Average'}Pooling{rank}D")
    for mode in ("max", "average")
    for rank in (1, 2, 3)
}


def window_cells(length, pool, stride, padding):
    """For each output position, the input indices its window covers (padding excluded)."""
    if padding == "same":
        out = math.ceil(length / stride)
        before = max((out - 1) * stride + pool - length, 0) // 2
    else:
        out = (length - pool) // stride + 1
        before = 0
    return [
        [j for j in range(i * stride - before, i * stride - before + pool) if 0 <= j < length]
        for i in range(out)
    ]


def pool_loops(x_cl, pool_size, strides, padding, mode):
    """Channels-last pooling, one output cell at a time, in float64."""
    x = np.asarray(x_cl, dtype=np.float64)
    cells = [
        window_cells(n, k, s, padding)
        for n, k, s in zip(x.shape[1:-1], pool_size, strides, strict=True)
    ]
    out = np.empty((x.shape[0], *(len(c) for c in cells), x.shape[-1]))
    for position in itertools.product(*(range(len(c)) for c in cells)):
        indices = np.ix_(*(c[p] for c, p in zip(cells, position, strict=True)))
        for n in range(x.shape[0]):
            for channel in range(x.shape[-1]):
                window = x[n][(*indices, channel)]
                value = window.max() if mode == "max" else window.sum() / window.size
                out[(n, *position, channel)] = value
    return out


def to_first(x):
    return np.moveaxis(x, -1, 1)


def apply(layer_class, x, version="3.15.1", **kwargs):
    with keras_semantics(version):
        layer = layer_class(**kwargs)
    return layer, layer(x)


WINDOW_CASES = [
    # (rank, spatial, pool_size, strides, padding)
    (1, (9,), 2, None, "valid"),
    (1, (9,), 4, 3, "same"),  # SAME total 1: the pad goes after
    (1, (9,), 4, 1, "same"),  # total 3: one before, two after
    (1, (8,), 3, 2, "same"),
    (1, (7,), 2, 3, "valid"),  # stride above the pool
    (1, (7,), 2, 3, "same"),
    (1, (3,), 5, 1, "same"),  # pool larger than the input
    (2, (7, 6), (3, 2), (2, 1), "same"),
    (2, (7, 6), 3, 2, "same"),
    (2, (7, 6), (2, 3), (1, 2), "valid"),
    (2, (5, 5), 2, None, "valid"),
    (3, (5, 6, 4), (3, 2, 2), (2, 1, 2), "same"),
    (3, (5, 6, 4), (2, 3, 2), (1, 2, 1), "same"),
    (3, (5, 6, 4), 2, (1, 1, 2), "valid"),
]


@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize(("rank", "spatial", "pool", "strides", "padding"), WINDOW_CASES)
def test_windowed_pool_matches_loops(rng, mode, data_format, rank, spatial, pool, strides, padding):
    x_cl = rng.normal(size=(2, *spatial, 3)).astype("float32")
    x = to_first(x_cl) if data_format == "channels_first" else x_cl
    layer, y = apply(
        WINDOWED[mode, rank],
        x,
        pool_size=pool,
        strides=strides,
        padding=padding,
        data_format=data_format,
    )
    pool_size = (pool,) * rank if isinstance(pool, int) else pool
    stride = pool_size if strides is None else strides
    stride = (stride,) * rank if isinstance(stride, int) else stride
    expected = pool_loops(x_cl, pool_size, stride, padding, mode)
    if data_format == "channels_first":
        expected = to_first(expected)
    assert y.dtype == np.float32
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=RTOL, atol=ATOL)
    assert layer.compute_output_shape((None, *x.shape[1:])) == (None, *y.shape[1:])


def test_same_average_divides_by_the_real_cells_only():
    """[1, 2, 3, 4] with pool 4, stride 1: TF pads one before and two after; the torch
    backend of Keras 3 <= 3.15.1 would average the padding instead."""
    x = np.array([1, 2, 3, 4], dtype="float32").reshape(1, 4, 1)
    _, y = apply(L.AveragePooling1D, x, pool_size=4, strides=1, padding="same")
    np.testing.assert_allclose(y.ravel(), [2.0, 2.5, 3.0, 3.5])
    _, y = apply(L.MaxPooling1D, -x, pool_size=4, strides=1, padding="same")
    np.testing.assert_allclose(y.ravel(), [-1.0, -1.0, -2.0, -3.0])  # padding never wins


@settings(max_examples=60, deadline=None)
@given(
    rank=st.integers(1, 3),
    data=st.data(),
    padding=st.sampled_from(["valid", "same"]),
    mode=st.sampled_from(["max", "average"]),
    channels_first=st.booleans(),
)
def test_windowed_pool_property(rank, data, padding, mode, channels_first):
    top = {1: 12, 2: 7, 3: 5}[rank]
    spatial = tuple(data.draw(st.lists(st.integers(1, top), min_size=rank, max_size=rank)))
    pool = tuple(data.draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
    strides = tuple(data.draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))
    x_cl = np.random.default_rng(sum(spatial)).normal(size=(2, *spatial, 2)).astype("float32")
    data_format = "channels_first" if channels_first else "channels_last"
    x = to_first(x_cl) if channels_first else x_cl
    with keras_semantics("3.15.1"):
        layer = WINDOWED[mode, rank](pool, strides, padding, data_format)
    if padding == "valid" and any(n < k for n, k in zip(spatial, pool, strict=True)):
        with pytest.raises(ShapeError, match="zero or negative"):
            layer(x)
        return
    y = layer(x)
    expected = pool_loops(x_cl, pool, strides, padding, mode)
    expected = to_first(expected) if channels_first else expected
    assert y.shape == expected.shape
    assert layer.compute_output_shape((None, *x.shape[1:])) == (None, *y.shape[1:])
    np.testing.assert_allclose(y, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pool_matches_hand_formula(rng, mode, rank, data_format, keepdims):
    x_cl = rng.normal(size=(3, *(5, 4, 3)[:rank], 2)).astype("float32")
    x = to_first(x_cl) if data_format == "channels_first" else x_cl
    layer, y = apply(GLOBAL[mode, rank], x, data_format=data_format, keepdims=keepdims)
    flat = np.asarray(x_cl, dtype=np.float64).reshape(3, -1, 2)
    expected = flat.max(axis=1) if mode == "max" else flat.sum(axis=1) / flat.shape[1]
    if keepdims:
        ones = (1,) * rank
        expected = expected.reshape(
            (3, 2, *ones) if data_format == "channels_first" else (3, *ones, 2)
        )
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected, rtol=RTOL, atol=ATOL)
    assert layer.compute_output_shape((None, *x.shape[1:])) == (None, *y.shape[1:])


@pytest.mark.parametrize("mode", ["max", "average"])
def test_global_pool_over_an_empty_run_time_axis(mode):
    """A length-0 sequence reaching a model built for unknown lengths: TensorFlow's max
    is -inf and its mean 0/0 = NaN."""
    layer = GLOBAL[mode, 1]()
    layer.build((None, None, 3))
    y = layer(np.zeros((2, 0, 3), dtype="float32"))
    expected = -np.inf if mode == "max" else np.nan
    np.testing.assert_array_equal(y, np.full((2, 3), expected, dtype="float32"))


# ---- masked GlobalAveragePooling1D ------------------------------------------------------

MASK = np.array(
    [
        [0, 1, 1, 1, 1, 1],  # leading
        [1, 1, 0, 0, 1, 1],  # interior
        [1, 1, 1, 1, 1, 0],  # trailing
        [0, 0, 0, 0, 0, 0],  # fully masked: 0/0
        [1, 1, 1, 1, 1, 1],
    ],
    dtype=bool,
)


def masked_mean_loops(x_steps_first, mask):
    """Per row and feature: the mean of the unmasked steps (NaN when there is none)."""
    out = np.empty((x_steps_first.shape[0], x_steps_first.shape[2]))
    for n in range(x_steps_first.shape[0]):
        kept = [t for t in range(mask.shape[1]) if mask[n, t]]
        for c in range(x_steps_first.shape[2]):
            values = [float(x_steps_first[n, t, c]) for t in kept]
            out[n, c] = sum(values) / len(values) if values else np.nan
    return out


@pytest.mark.parametrize(
    ("version", "data_format"),
    [
        ("2.2.4", "channels_last"),  # Keras 2.2/2.3 channels_first with a mask is refused
        ("2.15.0", "channels_last"),
        ("2.15.0", "channels_first"),
        ("3.15.1", "channels_last"),
        ("3.15.1", "channels_first"),
    ],
)
@pytest.mark.parametrize("keepdims", [False, True])
def test_masked_global_average(rng, version, data_format, keepdims):
    x_steps_first = rng.normal(size=(5, 6, 3)).astype("float32")
    x = np.swapaxes(x_steps_first, 1, 2) if data_format == "channels_first" else x_steps_first
    with keras_semantics(version):
        layer = L.GlobalAveragePooling1D(data_format=data_format, keepdims=keepdims)
    outputs, out_mask = layer.run(x, mask=MASK)
    expected = masked_mean_loops(x_steps_first, MASK)
    if keepdims:
        expected = expected[:, :, None] if data_format == "channels_first" else expected[:, None]
    assert out_mask is None
    np.testing.assert_allclose(outputs, expected, rtol=RTOL, atol=ATOL)  # NaN row included
    assert np.isnan(outputs[3]).all() and not np.isnan(np.delete(outputs, 3, axis=0)).any()


@pytest.mark.parametrize(
    ("version", "leaks"), [("2.2.4", True), ("2.15.0", True), ("3.15.1", False)]
)
def test_values_at_masked_steps(version, leaks):
    """Keras 3 selects the unmasked steps with where; Keras 2 multiplies by the mask, so
    NaN or inf at a masked step (NaN * 0, inf * 0) turns the row's mean into NaN."""
    x = np.array([[[1.0], [np.nan], [3.0], [np.inf]]], dtype="float32")
    mask = np.array([[True, False, True, False]])
    with keras_semantics(version):
        layer = L.GlobalAveragePooling1D()
    y = layer(x, mask=mask)
    if leaks:
        assert np.isnan(y).all()
    else:
        np.testing.assert_array_equal(y, [[2.0]])
