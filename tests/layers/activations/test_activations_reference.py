"""The NumPy references of the activation layers against expectations written here:
scalar piecewise formulas in float64 (``math``), explicit loops for PReLU's shared
slopes, scipy's softmax, and the masked softmax of each Keras version spelled out. Inputs
sit on and around every point where a function turns; hypothesis draws the rest. Plus
output shapes, masks passing through, configs and the version rules."""

import contextlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import softmax as scipy_softmax

from layerserve.layers import (
    ELU,
    Activation,
    Input,
    LeakyReLU,
    PReLU,
    ReLU,
    Softmax,
    ThresholdedReLU,
)
from layerserve.models import Model, Sequential, model_from_json
from layerserve.serialization import keras_semantics

# On and around the turning points (0, +-0.5, +-1, +-3, 6) and large magnitudes.
EDGES = np.array(
    [-50.0, -6.0, -3.0, -1.0001, -1.0, -0.9999, -0.5, -0.1, -1e-7, 0.0, 1e-7, 0.1, 0.3]
    + [0.4999, 0.5, 0.5001, 1.0, 1.2, 1.5, 2.0, 3.0, 5.999, 6.0, 6.001, 50.0]
)
FLOATS = st.floats(-60, 60, width=32)
VECTORS = hnp.arrays(np.float32, st.integers(1, 24), elements=FLOATS)


def relu_expected(x, max_value, slope, threshold):
    """Keras's net ReLU (spec section 3): ``x`` (clipped into [0, max_value] when there
    is a ceiling) above the threshold, 0 at it, ``slope * (x - threshold)`` below."""
    if x > threshold:
        return x if max_value is None else min(max(x, 0.0), max_value)
    if x == threshold:
        return 0.0
    return slope * (x - threshold)


def warns_if(condition, match):
    return pytest.warns(UserWarning, match=match) if condition else contextlib.nullcontext()


def run(layer, x, mask=None):
    return layer(np.asarray(x, dtype=np.float32), mask=mask)


RELU_ARGUMENTS = [
    {},
    {"max_value": 1.5},
    {"max_value": 6.0},
    {"negative_slope": 0.2},
    {"negative_slope": 2.5},
    {"threshold": 0.5},
    {"max_value": 2.0, "negative_slope": 0.3, "threshold": 0.5},
    {"max_value": 6.0, "negative_slope": 0.1},
    {"negative_slope": 0.1, "threshold": 1.0},
]


@pytest.mark.parametrize("version", ["2.2.4", "2.15.0", "3.15.1"])
@pytest.mark.parametrize("kwargs", RELU_ARGUMENTS, ids=str)
def test_relu_matches_the_piecewise_formula(kwargs, version):
    old_leaky = version == "2.2.4" and kwargs == {"negative_slope": 2.5}
    with keras_semantics(version), warns_if(old_leaky, "old TensorFlow versions"):
        layer = ReLU(**kwargs)
    args = (kwargs.get("max_value"), kwargs.get("negative_slope", 0.0))
    # the layer's arguments are float32 values: compare with the same values
    max_value, slope = (None if a is None else float(np.float32(a)) for a in args)
    threshold = float(np.float32(kwargs.get("threshold", 0.0)))
    x32 = EDGES.astype(np.float32)
    expected = [relu_expected(float(v), max_value, slope, threshold) for v in x32]
    np.testing.assert_allclose(run(layer, x32), expected, rtol=1e-6, atol=1e-7)


def test_relu_negative_threshold_under_a_ceiling_zeroes_the_gap():
    # multi-backend Keras 2.2.3+ accepts it; the clip zeroes (threshold, 0)
    layer = ReLU(max_value=1.0, negative_slope=0.5, threshold=-1.0)
    out = run(layer, [-2.0, -1.0, -0.5, 0.5, 3.0])
    np.testing.assert_allclose(out, [-0.5, 0.0, 0.0, 0.5, 1.0])


@settings(max_examples=40, deadline=None)
@given(x=VECTORS, slope=st.sampled_from([0.0, 0.1, 1.0, 3.0]), threshold=st.sampled_from([0, 2]))
def test_relu_property(x, slope, threshold):
    layer = ReLU(max_value=4.0, negative_slope=slope, threshold=threshold)
    slope32 = float(np.float32(slope))
    expected = [relu_expected(float(v), 4.0, slope32, threshold) for v in x]
    np.testing.assert_allclose(run(layer, x), expected, rtol=1e-6, atol=1e-5)


def test_relu_threshold_nan_and_infinities_follow_the_version():
    # Keras 3.15 selects where x > threshold; older Keras multiplies by the comparison
    x = np.array([np.nan, -np.inf, np.inf, 2.0], dtype=np.float32)
    with keras_semantics("3.15.1"):
        selected = run(ReLU(threshold=1.0), x)
    multiplied = run(ReLU(threshold=1.0), x)
    np.testing.assert_array_equal(selected, [0.0, 0.0, np.inf, 2.0])
    np.testing.assert_array_equal(multiplied, [np.nan, np.nan, np.inf, 2.0])


@pytest.mark.parametrize("slope", [0.3, 0.05, 2.5, -0.5])
def test_leaky_relu_matches_formula(slope):
    with warns_if(slope > 1, "computed max\\(x, slope \\* x\\)"):
        layer = LeakyReLU(slope)
    s = float(np.float32(slope))
    expected = [v if v >= 0 else s * v for v in EDGES]
    np.testing.assert_allclose(run(layer, EDGES), expected, rtol=1e-6)


@pytest.mark.parametrize("alpha", [1.0, 0.4, 2.0])
def test_elu_matches_formula(alpha):
    a = float(np.float32(alpha))
    expected = [v if v > 0 else a * math.expm1(v) for v in EDGES]
    np.testing.assert_allclose(run(ELU(alpha), EDGES), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("theta", [1.0, 0.5, 0.0])
def test_thresholded_relu_matches_formula(theta):
    expected = [v if v > theta else 0.0 for v in EDGES]
    np.testing.assert_allclose(run(ThresholdedReLU(theta), EDGES), expected, rtol=1e-7)
    # Keras multiplies by the 0/1 comparison: NaN stays NaN and -inf becomes NaN
    out = run(ThresholdedReLU(theta), [np.nan, -np.inf, np.inf])
    np.testing.assert_array_equal(out, [np.nan, np.nan, np.inf])


@pytest.mark.parametrize(
    ("shared_axes", "alpha_shape"),
    [
        (None, (3, 4, 5)),
        ([1, 2], (1, 1, 5)),
        (3, (3, 4, 1)),
        ([-1], (3, 1, 5)),  # Keras indexes with axis - 1: -1 shares the middle axis
        (0, (3, 4, 1)),
    ],
)
def test_prelu_slopes_by_position(shared_axes, alpha_shape, rng):
    model = Sequential([PReLU(shared_axes=shared_axes, input_shape=(3, 4, 5))])
    layer = model.layers[0]
    assert layer.alpha.shape == alpha_shape
    alpha = rng.normal(size=alpha_shape).astype(np.float32)
    layer.set_weights([alpha])
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    expected = np.empty(x.shape)
    for index in np.ndindex(x.shape):
        a = alpha[tuple(0 if alpha_shape[i] == 1 else index[i + 1] for i in range(3))]
        v = float(x[index])
        expected[index] = v if v >= 0 else float(a) * v
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-6)


def test_prelu_default_alpha_is_zero_so_it_starts_as_relu():
    model = Sequential([PReLU(input_shape=(4,))])
    np.testing.assert_array_equal(model.predict(np.array([[-2.0, -0.5, 0.0, 3.0]])), [[0, 0, 0, 3]])


@pytest.mark.parametrize("version", ["2.2.4", "2.15.0", "3.15.1"])
@pytest.mark.parametrize("axis", [-1, 1, 2, [1, 2], (2,), [0, 2]])
def test_softmax_matches_scipy(axis, version, rng):
    x = rng.normal(0, 3, size=(2, 3, 4)).astype(np.float32)
    with keras_semantics(version):
        out = run(Softmax(axis=axis), x)
    axes = tuple(axis) if isinstance(axis, (list, tuple)) else axis
    np.testing.assert_allclose(out, scipy_softmax(x.astype(np.float64), axis=axes), atol=1e-6)


def test_softmax_rank2_axis_is_ignored_by_multi_backend_keras_only(rng):
    x = rng.normal(size=(3, 4)).astype(np.float32)
    by_row, by_column = scipy_softmax(x, axis=1), scipy_softmax(x, axis=0)
    np.testing.assert_allclose(run(Softmax(axis=0), x), by_row, atol=1e-6)
    for version in ("2.15.0", "3.15.1"):
        with keras_semantics(version):
            np.testing.assert_allclose(run(Softmax(axis=0), x), by_column, atol=1e-6)


def test_softmax_of_a_single_axis_of_size_one_is_one():
    np.testing.assert_array_equal(run(Softmax(axis=1), np.full((2, 1, 3), 7.0)), 1.0)


def masked_expected(x, mask, version):
    """Spelled out per Keras version (spec section 7), over the last axis, in float64
    after the float32 additions Keras makes."""
    x = x.astype(np.float32)
    if version == "2.2.4":
        return scipy_softmax(x.astype(np.float64), axis=-1)  # the mask is ignored
    if version in ("2.15.0", "3.5.0", "3.11.0"):  # x + (1 - m) * -1e9 in float32
        logits = x + np.where(mask, np.float32(0), np.float32(-1e9))
    else:
        logits = np.where(mask, x, np.float32(-1e9))
    out = scipy_softmax(logits.astype(np.float64), axis=-1)
    return out * mask if version in ("3.11.0", "3.13.0", "3.15.1") else out


@pytest.mark.parametrize("version", ["2.2.4", "2.15.0", "3.5.0", "3.11.0", "3.13.0", "3.15.1"])
@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_softmax_mask_per_version(version, scale, rng):
    x = (rng.normal(size=(4, 5)) * scale).astype(np.float32)
    mask = rng.random((4, 5)) < 0.6
    mask[0] = False  # a fully masked row
    mask[1] = True
    with keras_semantics(version):
        layer = Softmax()
    out = run(layer, x, mask=mask)
    np.testing.assert_allclose(out, masked_expected(x, mask, version), atol=1e-6)
    if version in ("2.15.0", "3.5.0") and scale == 1.0:
        np.testing.assert_allclose(out[0], 0.2)  # uniform where everything is masked
    if version in ("3.11.0", "3.13.0", "3.15.1"):
        assert not out[0].any()


def test_softmax_robust_masking_replaces_instead_of_adding(rng):
    x = (rng.normal(size=(3, 4)) * 100).astype(np.float32)
    mask = np.zeros((3, 4), bool)
    with keras_semantics("2.15.0"):
        robust, plain = Softmax(robust_masking=True), Softmax()
    np.testing.assert_allclose(run(robust, x, mask=mask), 0.25)  # where(): uniform
    assert not np.allclose(run(plain, x, mask=mask), 0.25)  # -1e9 + x is not -1e9


def test_softmax_numeric_masks_per_version():
    x = np.zeros((1, 4), np.float32)
    mask = np.array([[0.9, 0.2, 1.0, 0.0]], np.float32)
    with keras_semantics("3.15.1"):  # mask > 0.5 keeps the positions
        np.testing.assert_allclose(run(Softmax(), x, mask=mask), [[0.5, 0, 0.5, 0]])
    with keras_semantics("3.11.0"):  # x + (1 - m) * -1e9, then times m
        out = run(Softmax(), x, mask=mask)
    logits = (1 - mask.astype(np.float64)) * -1e9
    np.testing.assert_allclose(out, scipy_softmax(logits, axis=-1) * mask, atol=1e-7)


def test_softmax_mask_broadcasts_from_the_right(rng):
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)
    mask = np.array([True, False, True, True])
    with keras_semantics("3.15.1"):
        out = run(Softmax(), x, mask=mask)
    expected = scipy_softmax(np.where(mask, x, -1e9).astype(np.float64), axis=-1) * mask
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_activation_layer_follows_its_own_keras_version():
    with keras_semantics("3.15.1"):
        keras3 = Activation("hard_sigmoid")
        softmax_any_rank = Activation("softmax")
    keras2 = Activation("hard_sigmoid")
    assert run(keras3, [1.0])[0] == pytest.approx(1 / 6 + 0.5)
    assert run(keras2, [1.0])[0] == pytest.approx(0.7)
    # Keras 3 accepts rank 1 (the batch axis), even when called outside the version block
    np.testing.assert_allclose(run(softmax_any_rank, [0.0, math.log(3.0)]), [0.25, 0.75])


LAYERS = {
    "relu": lambda: ReLU(max_value=2.0, negative_slope=0.1, threshold=0.5),
    "leaky": lambda: LeakyReLU(0.2),
    "prelu": lambda: PReLU(shared_axes=[1]),
    "elu": lambda: ELU(0.5),
    "thresholded": lambda: ThresholdedReLU(0.3),
    "softmax": lambda: Softmax(axis=[1, 2]),
    "activation": lambda: Activation("selu"),
    "glu": lambda: Activation("glu"),
}


@pytest.mark.parametrize("build", LAYERS.values(), ids=LAYERS.keys())
def test_shape_mask_and_config_round_trip(build, rng):
    layer = build()
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)
    mask = rng.random((2, 3, 4)) < 0.5
    out = layer(x)
    assert out.shape == layer.compute_output_shape(x.shape)
    assert layer.compute_mask(x, mask) is mask
    clone = type(layer).from_config(layer.get_config())
    clone.build((None, 3, 4))
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x), out)
    assert clone.get_config() == layer.get_config()


def test_masks_pass_through_a_model():
    from layerserve.layers import Masking

    model = Sequential(
        [Masking(input_shape=(4, 3)), ReLU(), LeakyReLU(), PReLU(), ELU(), ThresholdedReLU()]
    )
    x = np.ones((2, 4, 3), np.float32)
    x[0, 1] = 0
    np.testing.assert_array_equal(model.compute_mask(x), [[1, 0, 1, 1], [1, 1, 1, 1]])


@pytest.mark.parametrize(
    ("version", "build", "stored"),
    [
        ("2.15.0", lambda: LeakyReLU(0.3), {"alpha": 0.30000001192092896}),
        ("3.15.1", lambda: LeakyReLU(alpha=0.3), {"negative_slope": 0.3}),
        ("2.15.0", lambda: ELU(0.7), {"alpha": 0.699999988079071}),
        ("3.15.1", lambda: ELU(0.7), {"alpha": 0.7}),
        ("2.15.0", lambda: ThresholdedReLU(0.3), {"theta": 0.30000001192092896}),
        (
            "2.15.0",
            lambda: ReLU(0.1, 0.3, 0.2),
            {
                "max_value": 0.10000000149011612,
                "negative_slope": 0.30000001192092896,
                "threshold": 0.20000000298023224,
            },
        ),
        ("3.15.1", lambda: ReLU(0.1), {"max_value": 0.1, "negative_slope": 0.0, "threshold": 0.0}),
        ("2.2.1", lambda: ReLU(6), {"max_value": 6.0}),
        ("2.15.0", lambda: Softmax([1, 2], robust_masking=True), {"axis": [1, 2]}),
    ],
)
def test_configs_store_values_as_each_keras_does(version, build, stored):
    with keras_semantics(version):
        config = build().get_config()
    keys = {"name", "trainable", "dtype", "robust_masking"}
    assert {k: v for k, v in config.items() if k not in keys} == stored


def test_float64_layers_keep_exact_keras2_arguments():
    with keras_semantics("2.15.0"):
        layer = LeakyReLU(0.3, dtype="float64")
    assert layer.negative_slope == 0.3


def test_model_json_round_trip_keeps_every_argument():
    with keras_semantics("2.15.0"):
        x = Input((3, 4))
        outputs = [
            ReLU(1.0, 0.2, 0.1)(x),
            LeakyReLU(0.1)(x),
            PReLU(shared_axes=1)(x),
            ELU(0.4)(x),
            ThresholdedReLU(0.2)(x),
            Softmax(axis=1, robust_masking=True)(x),
        ]
        model = Model(x, outputs)
    rebuilt = model_from_json(model.to_json())
    for old, new in zip(model.layers[1:], rebuilt.layers[1:], strict=True):
        assert new.get_config() == old.get_config()
        assert new.keras_version == (2, 15, 0)
