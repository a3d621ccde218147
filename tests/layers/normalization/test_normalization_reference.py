"""LayerNormalization, GroupNormalization, UnitNormalization and RMSNormalization against
loops in float64 written here (one slice per sample, group or vector), hypothesis over
shapes and axes, shapes, masks and config round trips."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerserve.errors import ShapeError
from layerserve.layers import (
    BatchNormalization,
    GroupNormalization,
    LayerNormalization,
    Masking,
    RMSNormalization,
    UnitNormalization,
)
from layerserve.models import Sequential
from layerserve.serialization import keras_semantics

ATOL, RTOL = 1e-5, 1e-5


def randomize(layer, rng):
    layer.set_weights([rng.normal(0.0, 0.7, w.shape) for w in layer.get_weights()])
    return [w.astype(np.float64) for w in layer.get_weights()]


def per_slice(x, axes, transform):
    """Apply ``transform`` (float64 block -> block) to each slice over ``axes``."""
    x = x.astype(np.float64)
    kept = [a for a in range(x.ndim) if a not in axes]
    moved = np.moveaxis(x, sorted(axes), range(len(kept), x.ndim))
    out = np.empty_like(moved)
    for index in np.ndindex(moved.shape[: len(kept)]):
        out[index] = transform(moved[index])
    return np.moveaxis(out, range(len(kept), x.ndim), sorted(axes))


def placed(weight, shape, axes):
    """A stored weight on the input's ``axes``: element ``i`` of the positional axes reads
    flat position ``ravel_multi_index(i)`` (Keras reshapes, it never transposes)."""
    axes = sorted(axes)
    dims = [shape[a] for a in axes]
    out = np.empty([shape[a] if a in axes else 1 for a in range(len(shape))])
    flat = weight.ravel()
    for index in np.ndindex(*dims):
        full = [0] * len(shape)
        for a, i in zip(axes, index, strict=True):
            full[a] = i
        out[tuple(full)] = flat[np.ravel_multi_index(index, dims)]
    return out


def layer_norm_expected(x, axes, epsilon, gamma=None, beta=None, rms_scaling=False):
    def block(b):
        mean, variance = b.mean(), ((b - b.mean()) ** 2).mean()
        return (b if rms_scaling else b - mean) / np.sqrt(variance + epsilon)

    y = per_slice(x, axes, block)
    if gamma is not None:
        y = y * placed(gamma, x.shape, axes)
    if beta is not None:
        y = y + placed(beta, x.shape, axes)
    return y


# ---- LayerNormalization -----------------------------------------------------------------

LAYER_NORM = [
    # (input shape, axis, center, scale, epsilon, version)
    ((4, 6), -1, True, True, 1e-3, "3.15.1"),
    ((3, 4, 5, 2), [2, 3], True, True, 1e-5, "2.15.0"),  # trailing
    ((3, 4, 5, 2), [1, 3], False, True, 1e-3, "3.15.1"),  # non-trailing
    ((3, 2, 4, 5), 1, True, False, 1e-3, "2.15.0"),  # channels_first feature map
    ((3, 4, 5, 3), [3, 1], True, True, 1e-3, "2.15.0"),  # tf.keras keeps this order
    ((3, 4, 5, 3), [3, 1], True, True, 1e-3, "3.15.1"),  # Keras 3 sorts it
    ((3, 4, 5, 3), [-1, 1], True, True, 0.1, "3.15.1"),  # sorted: still [-1, 1]
    ((2, 3, 4), [1, 2], False, False, 1e-3, "3.15.1"),
]


@pytest.mark.parametrize(("shape", "axis", "center", "scale", "epsilon", "version"), LAYER_NORM)
def test_layer_normalization_matches_a_per_sample_loop(
    rng, shape, axis, center, scale, epsilon, version
):
    with keras_semantics(version):
        layer = LayerNormalization(axis=axis, center=center, scale=scale, epsilon=epsilon)
    x = rng.normal(1.0, 2.0, shape).astype("float32")
    layer(x)
    weights = iter(randomize(layer, rng))
    gamma = next(weights) if scale else None
    beta = next(weights) if center else None
    axes = [a % len(shape) for a in ([axis] if isinstance(axis, int) else axis)]
    expected = layer_norm_expected(x, axes, epsilon, gamma, beta)
    y = layer(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    ("version", "axis", "weight_shape"),
    [("3.15.1", [3, 1], (4, 3)), ("2.15.0", [3, 1], (3, 4)), ("3.15.1", [-1, 1], (3, 4))],
)
def test_weight_shape_follows_each_keras_axis_order(version, axis, weight_shape):
    with keras_semantics(version):
        layer = LayerNormalization(axis=axis)
    layer(np.zeros((2, 4, 5, 3), "float32"))
    assert [w.shape for w in layer.get_weights()] == [weight_shape] * 2


def test_rms_scaling_divides_by_the_centred_deviation_without_centring(rng):
    with keras_semantics("3.15.1"):
        layer = LayerNormalization(rms_scaling=True, scale=False, epsilon=0.01)
    x = rng.normal(3.0, 1.0, (4, 5)).astype("float32")
    layer(x)
    assert [v.name for v in layer.weights] == ["gamma"]  # no beta; gamma despite scale=False
    (gamma,) = randomize(layer, rng)
    expected = layer_norm_expected(x, [1], 0.01, gamma, rms_scaling=True)
    np.testing.assert_allclose(layer(x), expected, rtol=RTOL, atol=ATOL)
    assert np.all(np.abs(layer(x).mean(axis=1)) > 0.5)  # a mean of 3 is not removed
    assert layer.get_config()["rms_scaling"] is True


def test_two_pass_variance_keeps_large_means_exact(rng):
    """1000 +- 1 in float32: E[x^2] - E[x]^2 loses the variance (error ~0.1), two passes
    do not (error ~1e-4 from float32 inputs)."""
    x = (1000.0 + rng.normal(size=(16, 32))).astype("float32")
    layer = LayerNormalization(center=False, scale=False)
    exact = layer_norm_expected(x, [1], 1e-3)
    assert np.max(np.abs(layer(x) - exact)) < 1e-3
    one_pass = (x * x).mean(1, keepdims=True) - x.mean(1, keepdims=True) ** 2
    naive = (x - x.mean(1, keepdims=True)) / np.sqrt(np.maximum(one_pass, 0) + 1e-3)
    assert np.max(np.abs(naive - exact)) > 1e-2


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    data=st.data(),
    center=st.booleans(),
    scale=st.booleans(),
    keras3=st.booleans(),
)
def test_layer_normalization_any_axes_property(sizes, data, center, scale, keras3):
    rank = len(sizes) + 1
    axes = data.draw(st.lists(st.integers(1, rank - 1), min_size=1, unique=True))
    axis = [a - rank if data.draw(st.booleans()) else a for a in axes]
    with keras_semantics("3.15.1" if keras3 else "2.15.0"):
        layer = LayerNormalization(axis=axis, center=center, scale=scale)
    gen = np.random.default_rng(len(sizes))
    x = gen.normal(size=(2, *sizes)).astype("float32")
    layer(x)
    weights = iter(randomize(layer, gen))
    gamma = next(weights) if scale else None
    beta = next(weights) if center else None
    expected = layer_norm_expected(x, axes, 1e-3, gamma, beta)
    np.testing.assert_allclose(layer(x), expected, rtol=RTOL, atol=ATOL)


# ---- GroupNormalization -----------------------------------------------------------------


def group_norm_expected(x, axis, groups, epsilon, gamma=None, beta=None, weights=None):
    """A loop over samples and groups; ``weights`` are frequency weights of the moments."""
    x = x.astype(np.float64)
    channels = x.shape[axis]
    size = channels // groups
    w = np.ones_like(x) if weights is None else weights.astype(np.float64)
    y = np.empty_like(x)
    for n in range(x.shape[0]):
        for g in range(groups):
            members = list(range(g * size, (g + 1) * size))
            block = np.take(x[n], members, axis=axis - 1)
            wb = np.take(w[n], members, axis=axis - 1)
            total = wb.sum()
            mean = (wb * block).sum() / total if total else 0.0
            variance = (wb * (block - mean) ** 2).sum() / total if total else 0.0
            normalized = (block - mean) / np.sqrt(variance + epsilon)
            index = [slice(None)] * (x.ndim - 1)
            index[axis - 1] = members
            y[n][tuple(index)] = normalized
    if gamma is not None:
        y = y * gamma.reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    if beta is not None:
        y = y + beta.reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    return y


GROUP_NORM = [
    # (input shape, groups, axis, center, scale, epsilon)
    ((2, 4, 4, 6), 3, -1, True, True, 1e-3),
    ((2, 6, 3, 4), 2, 1, False, True, 1e-4),  # channels_first
    ((3, 5, 4), -1, -1, True, False, 1e-3),  # instance normalization
    ((3, 6), 1, -1, True, True, 1e-3),  # one group: layer norm without per-position weights
    ((2, 3, 6, 2), 6, 2, True, True, 0.5),
]


@pytest.mark.parametrize(("shape", "groups", "axis", "center", "scale", "epsilon"), GROUP_NORM)
def test_group_normalization_matches_a_group_loop(rng, shape, groups, axis, center, scale, epsilon):
    layer = GroupNormalization(groups, axis=axis, center=center, scale=scale, epsilon=epsilon)
    x = rng.normal(20.0, 1.0, shape).astype("float32")
    layer(x)
    weights = iter(randomize(layer, rng))
    gamma = next(weights) if scale else None
    beta = next(weights) if center else None
    resolved = groups if groups > 0 else shape[axis]
    expected = group_norm_expected(x, axis % len(shape), resolved, epsilon, gamma, beta)
    np.testing.assert_allclose(layer(x), expected, rtol=RTOL, atol=ATOL)
    assert layer.get_config()["groups"] == groups


@settings(max_examples=25, deadline=None)
@given(
    spatial=st.lists(st.integers(1, 3), max_size=2),
    groups=st.integers(1, 3),
    per_group=st.integers(1, 3),
    data=st.data(),
)
def test_group_normalization_any_layout_property(spatial, groups, per_group, data):
    rank = len(spatial) + 2
    axis = data.draw(st.integers(1, rank - 1))
    shape = [2, *spatial]
    shape.insert(axis, groups * per_group)
    layer = GroupNormalization(groups, axis=axis - rank if data.draw(st.booleans()) else axis)
    gen = np.random.default_rng(rank)
    x = gen.normal(size=shape).astype("float32")
    layer(x)
    gamma, beta = randomize(layer, gen)
    expected = group_norm_expected(x, axis, groups, 1e-3, gamma, beta)
    np.testing.assert_allclose(layer(x), expected, rtol=RTOL, atol=ATOL)


def test_tf_keras_weights_group_moments_by_the_broadcast_mask(rng):
    x = rng.normal(size=(3, 4, 4)).astype("float32")
    mask = rng.random((3, 4, 4)) < 0.5
    mask[0, :, :2] = False  # a whole group masked: mean and variance 0
    with keras_semantics("2.15.0"):
        layer = GroupNormalization(2)
    layer(x)
    gamma, beta = randomize(layer, rng)
    got = layer(x, mask=mask)
    np.testing.assert_allclose(
        got, group_norm_expected(x, 2, 2, 1e-3, gamma, beta, mask), rtol=RTOL, atol=ATOL
    )
    # An (N, T) mask is broadcast against (N, T, C) from the right, as tf.broadcast_to does.
    square = rng.normal(size=(4, 4, 4)).astype("float32")
    steps = rng.random((4, 4)) < 0.5
    expected = group_norm_expected(
        square, 2, 2, 1e-3, gamma, beta, np.broadcast_to(steps, (4, 4, 4))
    )
    np.testing.assert_allclose(layer(square, mask=steps), expected, rtol=RTOL, atol=ATOL)
    with pytest.raises(ShapeError, match=r"broadcasts its mask to the input shape"):
        layer(x, mask=np.ones((3, 4), bool))
    with keras_semantics("3.15.1"):
        keras3 = GroupNormalization(2)
    keras3(x)
    keras3.set_weights([gamma, beta])
    expected = group_norm_expected(x, 2, 2, 1e-3, gamma, beta)
    np.testing.assert_allclose(keras3(x, mask=mask), expected, rtol=RTOL, atol=ATOL)


# ---- UnitNormalization and RMSNormalization ---------------------------------------------


@pytest.mark.parametrize(("version", "expected"), [("3.15.1", [1.0, 0.0]), ("2.15.0", [0.01, 0.0])])
def test_unit_normalization_floor_differs_by_version(version, expected):
    with keras_semantics(version):
        layer = UnitNormalization()
    x = np.array([[1e-8, 0.0], [0.0, 0.0], [3.0, 4.0]], "float32")
    np.testing.assert_allclose(layer(x), [expected, [0, 0], [0.6, 0.8]], rtol=1e-6)


@pytest.mark.parametrize("axis", [-1, 1, [1, 2], [-1, -3], 0])
def test_unit_normalization_matches_the_norm_over_axes(rng, axis):
    x = rng.normal(size=(3, 4, 2, 5)).astype("float32")
    axes = [a % 4 for a in ([axis] if isinstance(axis, int) else axis)]
    expected = per_slice(x, axes, lambda b: b / np.linalg.norm(b.ravel()))
    np.testing.assert_allclose(UnitNormalization(axis=axis)(x), expected, rtol=RTOL, atol=1e-6)


def test_rms_normalization_formula_and_its_broadcast_scale(rng):
    with keras_semantics("3.15.1"):
        layer = RMSNormalization(axis=[-1, -2], epsilon=1e-3)
        x = rng.normal(2.0, 1.0, (2, 3, 4, 5)).astype("float32")
        layer(x)
        assert layer.get_weights()[0].shape == (4, 5)  # sorted: [-2, -1]
        (scale,) = randomize(layer, rng)
        expected = per_slice(x, [2, 3], lambda b: b / np.sqrt((b**2).mean() + 1e-3)) * scale
        np.testing.assert_allclose(layer(x), expected, rtol=RTOL, atol=ATOL)
        # axis=1 on (N, 4, 4): the (4,) scale multiplies the *last* axis, as in Keras.
        quirk = RMSNormalization(axis=1)
        square = rng.normal(size=(2, 4, 4)).astype("float32")
        quirk(square)
        (scale,) = randomize(quirk, rng)
        expected = per_slice(square, [1], lambda b: b / np.sqrt((b**2).mean() + 1e-6))
        np.testing.assert_allclose(quirk(square), expected * scale, rtol=RTOL, atol=ATOL)
        with pytest.raises(ShapeError, match=r"does not broadcast against the input's last"):
            RMSNormalization(axis=1)(np.zeros((2, 3, 4), "float32"))


# ---- shapes, masks, configs ---------------------------------------------------------------

LAYERS = [
    pytest.param(lambda: BatchNormalization(axis=1), (2, 3, 4, 5), id="BatchNormalization"),
    pytest.param(lambda: LayerNormalization(axis=[1, 3]), (2, 3, 4, 5), id="LayerNormalization"),
    pytest.param(lambda: GroupNormalization(5, axis=-1), (2, 3, 4, 5), id="GroupNormalization"),
    pytest.param(lambda: UnitNormalization(axis=[-2]), (2, 3, 4, 5), id="UnitNormalization"),
    pytest.param(lambda: RMSNormalization(axis=[2, 3]), (2, 3, 4, 5), id="RMSNormalization"),
]


@pytest.mark.parametrize(("make", "shape"), LAYERS)
def test_output_shape_equals_the_computed_shape(rng, make, shape):
    layer = make()
    y = layer(rng.normal(size=shape).astype("float32"))
    assert layer.compute_output_shape((None, *shape[1:])) == (None, *y.shape[1:])
    assert y.shape == shape


@pytest.mark.parametrize(
    "make",
    [
        lambda: LayerNormalization(),
        lambda: GroupNormalization(3),
        lambda: UnitNormalization(),
        lambda: BatchNormalization(),
    ],
)
def test_masks_pass_through(rng, make):
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    x[0, 1] = 0
    with keras_semantics("3.15.1"):  # tf.keras's GroupNormalization fails on (N, T) masks
        model = Sequential([Masking(input_shape=(5, 3)), make()])
    np.testing.assert_array_equal(model.compute_mask(x), np.any(x != 0, axis=-1))


def test_rms_normalization_drops_the_mask_as_keras_3_does(rng):
    with keras_semantics("3.15.1"), pytest.warns(UserWarning, match="does not support masking"):
        model = Sequential([Masking(input_shape=(5, 3)), RMSNormalization()])
        assert model.compute_mask(rng.normal(size=(2, 5, 3)).astype("float32")) is None


CONFIGS = [
    lambda: LayerNormalization(
        axis=[3, 1],
        epsilon=1e-5,
        center=False,
        rms_scaling=True,
        gamma_initializer="zeros",
        beta_regularizer="l1",
        gamma_constraint="unit_norm",
        name="ln",
    ),
    lambda: GroupNormalization(
        groups=-1,
        axis=1,
        epsilon=0.1,
        scale=False,
        beta_initializer="ones",
        gamma_regularizer="l2",
        beta_constraint="non_neg",
    ),
    lambda: UnitNormalization(axis=[1, -1], dtype="float64"),
    lambda: RMSNormalization(axis=[1, 2], epsilon=1e-3, trainable=False),
]


@pytest.mark.parametrize("make", CONFIGS)
def test_config_round_trips(make):
    layer = make()
    config = layer.get_config()
    json.dumps(config)
    assert type(layer).from_config(config).get_config() == config
