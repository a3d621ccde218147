"""Numbers of the core layers against independent expectations (Keras 2.2 semantics)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from layerserve import backend as K
from layerserve.errors import NotSupportedError, ShapeError
from layerserve.layers import (
    Activation,
    ActivityRegularization,
    Dense,
    Dropout,
    Flatten,
    Input,
    InputLayer,
    Lambda,
    Masking,
    Permute,
    RepeatVector,
    Reshape,
    SpatialDropout1D,
    SpatialDropout2D,
    SpatialDropout3D,
)
from layerserve.models import Model, Sequential

RTOL, ATOL = 1e-5, 1e-6


def close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ---- Dense ---------------------------------------------------------------------------


def dense_reference(x, kernel, bias, activation=lambda v: v):
    """Explicit loops: the kernel contracts the last axis at every leading position."""
    lead = x.shape[:-1]
    out = np.zeros((*lead, kernel.shape[1]), dtype=np.float64)
    for index in np.ndindex(*lead):
        for j in range(kernel.shape[1]):
            total = sum(float(x[index][i]) * float(kernel[i, j]) for i in range(kernel.shape[0]))
            out[index][j] = total + (0.0 if bias is None else float(bias[j]))
    return activation(out)


@pytest.mark.parametrize(
    ("input_shape", "units", "use_bias", "activation", "reference_activation"),
    [
        ((4, 3), 5, True, None, lambda v: v),
        ((2, 6, 3), 4, True, "relu", lambda v: np.maximum(v, 0)),
        ((2, 3, 4, 5), 2, True, "tanh", np.tanh),
        ((3, 7), 1, False, "sigmoid", sigmoid),
        ((2, 2, 3), 3, False, None, lambda v: v),
    ],
)
def test_dense_matches_last_axis_contraction(
    rng, input_shape, units, use_bias, activation, reference_activation
):
    x = rng.normal(size=input_shape).astype("float32")
    layer = Dense(units, activation=activation, use_bias=use_bias)
    layer(x)  # build
    kernel = rng.normal(size=(input_shape[-1], units)).astype("float32")
    weights = [kernel]
    bias = None
    if use_bias:
        bias = rng.normal(size=(units,)).astype("float32")
        weights.append(bias)
    layer.set_weights(weights)
    y = layer(x)
    assert y.shape == (*input_shape[:-1], units)
    close(y, dense_reference(x, kernel, bias, reference_activation))
    # Independent second formulation of the same contraction.
    einsum = np.einsum("...i,ij->...j", x, kernel) + (0 if bias is None else bias)
    close(y, reference_activation(einsum))
    assert [w.shape for w in layer.get_weights()] == [w.shape for w in weights]


def test_dense_rank3_is_not_a_flatten(rng):
    """Each timestep is transformed on its own: changing step 0 leaves step 1 alone."""
    x = rng.normal(size=(1, 2, 3)).astype("float32")
    layer = Dense(4)
    before = layer(x)
    x2 = x.copy()
    x2[0, 0] += 10.0
    after = layer(x2)
    close(after[0, 1], before[0, 1])
    assert not np.allclose(after[0, 0], before[0, 0])


# ---- Activation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("linear", lambda v: v),
        ("relu", lambda v: np.maximum(v, 0)),
        ("tanh", np.tanh),
        ("sigmoid", sigmoid),
        ("hard_sigmoid", lambda v: np.clip(0.2 * v + 0.5, 0, 1)),
        ("softplus", lambda v: np.log1p(np.exp(v))),
        ("softsign", lambda v: v / (1 + np.abs(v))),
        ("elu", lambda v: np.where(v > 0, v, np.expm1(v))),
        (
            "softmax",
            lambda v: (
                np.exp(v - v.max(-1, keepdims=True))
                / np.exp(v - v.max(-1, keepdims=True)).sum(-1, keepdims=True)
            ),
        ),
    ],
)
def test_activation_layer(rng, name, reference):
    x = (rng.normal(size=(3, 4, 5)) * 3).astype("float32")
    layer = Activation(name)
    y = layer(x)
    assert y.shape == x.shape
    close(y, reference(x.astype(np.float64)))


# ---- Dropout -------------------------------------------------------------------------


def test_dropout_is_identity_at_inference(rng):
    x = rng.normal(size=(6, 7)).astype("float32")
    layer = Dropout(0.5, seed=1)
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer(x, training=False), x)
    inp = Input((7,))
    model = Model(inp, Dropout(0.5, seed=1)(inp))
    np.testing.assert_array_equal(model.predict(x), x)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_training_is_inverted_dropout(rng, rate):
    x = rng.uniform(0.5, 2.0, size=(40, 30)).astype("float32")
    y = Dropout(rate, seed=3)(x, training=True)
    dropped = y == 0
    assert dropped.any() and (~dropped).any()
    close(y[~dropped], x[~dropped] / (1.0 - rate))


@pytest.mark.parametrize(
    ("input_shape", "noise_shape", "shared_axes"),
    [
        ((4, 6, 5), (None, 1, 5), (1,)),
        ((4, 6, 5), (None, 1, None), (1,)),
        ((4, 6, 5), (1, None, None), (0,)),
        ((3, 4, 5, 6), (None, 1, 1, None), (1, 2)),
    ],
)
def test_dropout_noise_shape_shares_mask(input_shape, noise_shape, shared_axes):
    x = np.ones(input_shape, dtype="float32")
    y = Dropout(0.5, noise_shape=noise_shape, seed=7)(x, training=True)
    keep = y != 0
    for axis in shared_axes:
        first = np.take(keep, [0], axis=axis)
        np.testing.assert_array_equal(keep, np.broadcast_to(first, keep.shape))
    # Somewhere a mask decision was still made independently.
    assert keep.any() and (~keep).any()


def test_dropout_same_seed_same_masks(rng):
    x = rng.uniform(1, 2, size=(10, 20)).astype("float32")
    a, b, other = Dropout(0.4, seed=11), Dropout(0.4, seed=11), Dropout(0.4, seed=12)
    for _ in range(3):  # the sequence of masks is reproducible, not just the first one
        ya, yb = a(x, training=True), b(x, training=True)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(Dropout(0.4, seed=11)(x, training=True), other(x, training=True))


@settings(max_examples=25, deadline=None)
@given(rate=st.floats(0.05, 0.95), seed=st.integers(0, 2**31 - 1))
def test_dropout_fraction_matches_rate(rate, seed):
    n = 200 * 100
    x = np.ones((200, 100), dtype="float32")
    y = Dropout(rate, seed=seed)(x, training=True)
    fraction = float(np.mean(y == 0))
    tolerance = 5 * math.sqrt(rate * (1 - rate) / n)  # 5 binomial standard deviations
    assert abs(fraction - rate) <= tolerance
    close(y[y != 0], np.full(np.count_nonzero(y), 1.0 / (1.0 - rate)))


# ---- SpatialDropout ------------------------------------------------------------------


def channel_slices(y, data_format):
    """Yield each (sample, channel) feature map of ``y``."""
    channels = y.shape[1] if data_format == "channels_first" else y.shape[-1]
    for n in range(y.shape[0]):
        for c in range(channels):
            if data_format == "channels_first":
                yield y[n, c]
            else:
                yield y[n, ..., c]


@pytest.mark.parametrize(
    ("layer_cls", "shape", "data_format"),
    [
        (SpatialDropout1D, (8, 5, 16), "channels_last"),
        (SpatialDropout2D, (8, 3, 4, 16), "channels_last"),
        (SpatialDropout2D, (8, 16, 3, 4), "channels_first"),
        (SpatialDropout3D, (8, 2, 3, 2, 16), "channels_last"),
        (SpatialDropout3D, (8, 16, 2, 3, 2), "channels_first"),
    ],
)
def test_spatial_dropout_drops_whole_feature_maps(rng, layer_cls, shape, data_format):
    rate = 0.5
    x = rng.uniform(0.5, 1.5, size=shape).astype("float32")
    kwargs = {} if layer_cls is SpatialDropout1D else {"data_format": data_format}
    layer = layer_cls(rate, seed=5, **kwargs)
    np.testing.assert_array_equal(layer(x), x)  # inference: identity
    y = layer(x, training=True)
    xs = list(channel_slices(x, data_format))
    kept = dropped = 0
    for xs_map, ys_map in zip(xs, channel_slices(y, data_format), strict=True):
        if np.all(ys_map == 0):
            dropped += 1
        else:
            close(ys_map, xs_map / (1 - rate))
            kept += 1
    assert kept > 0 and dropped > 0  # 128 fair coin flips


def test_spatial_dropout_2d_uses_global_format_when_unset(rng):
    K.set_image_data_format("channels_first")
    layer = SpatialDropout2D(0.5, seed=2)
    x = rng.uniform(0.5, 1.5, size=(6, 10, 3, 3)).astype("float32")
    y = layer(x, training=True)
    for ys_map in channel_slices(y, "channels_first"):
        assert np.all(ys_map == 0) or np.all(ys_map != 0)


# ---- Flatten -------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 3, 4, 5), (1, 2, 1, 3, 2)])
def test_flatten_channels_last_is_row_major(rng, shape):
    x = rng.normal(size=shape).astype("float32")
    y = Flatten(data_format="channels_last")(x)
    expected = np.array([x[n].ravel(order="C") for n in range(shape[0])])
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 3, 4), (1, 2, 3, 2, 2)])
def test_flatten_channels_first_moves_channels_last(rng, shape):
    x = rng.normal(size=shape).astype("float32")
    y = Flatten(data_format="channels_first")(x)
    perm = (0, *range(2, len(shape)), 1)
    np.testing.assert_array_equal(y, np.reshape(np.transpose(x, perm), (shape[0], -1)))
    # Element check on the rank-4 NCHW layout: index (h, w, c) in the flat vector.
    if len(shape) == 4:
        _, c, h, w = shape
        for hi, wi, ci in [(0, 0, 1), (2, 3, 0), (1, 4, 2)]:
            assert y[1, (hi * w + wi) * c + ci] == x[1, ci, hi, wi]


@pytest.mark.parametrize("shape", [(4,), (4, 5)])
def test_flatten_rank_below_three_raises(shape):
    with pytest.raises(ShapeError, match="min_ndim=3"):
        Flatten()(np.zeros(shape, dtype="float32"))


def test_flatten_unknown_dimension_raises():
    with pytest.raises(ShapeError, match="not fully defined"):
        Flatten()(Input(batch_shape=(None, None, 3)))


# ---- Reshape, Permute, RepeatVector --------------------------------------------------


@pytest.mark.parametrize(
    ("input_shape", "target", "expected"),
    [
        ((2, 12), (3, 4), (2, 3, 4)),
        ((2, 3, 4), (-1,), (2, 12)),
        ((2, 3, 4), (2, -1), (2, 2, 6)),
        ((5, 2, 3, 2), (-1, 3, 2), (5, 2, 3, 2)),
        ((1, 6), (1, 6, 1), (1, 1, 6, 1)),
    ],
)
def test_reshape_resolves_minus_one(rng, input_shape, target, expected):
    x = rng.normal(size=input_shape).astype("float32")
    layer = Reshape(target)
    y = layer(x)
    assert y.shape == expected
    np.testing.assert_array_equal(y.ravel(), x.ravel())
    # Symbolic: same shape with a None batch.
    assert layer.compute_output_shape((None, *input_shape[1:])) == (None, *expected[1:])


@pytest.mark.parametrize(
    ("input_shape", "target"),
    [((2, 3), (4,)), ((2, 3, 4), (5, -1)), ((2, 6), (4, 2))],
)
def test_reshape_size_mismatch_names_shapes(input_shape, target):
    x = np.zeros(input_shape, dtype="float32")
    with pytest.raises(ShapeError) as info:
        Reshape(target)(x)
    message = str(info.value)
    assert str(input_shape) in message
    assert ", ".join(str(d) for d in target) in message


@pytest.mark.parametrize(
    ("shape", "dims"),
    [((2, 3, 4), (2, 1)), ((2, 3, 4, 5), (3, 1, 2)), ((2, 3, 4, 5), (1, 2, 3)), ((1, 2), (1,))],
)
def test_permute(rng, shape, dims):
    x = rng.normal(size=shape).astype("float32")
    layer = Permute(dims)
    y = layer(x)
    assert y.shape == (shape[0], *(shape[d] for d in dims))
    for index in np.ndindex(*y.shape):
        source = [index[0]] + [0] * len(dims)
        for i, d in enumerate(dims):
            source[d] = index[i + 1]
        assert y[index] == x[tuple(source)]
    assert layer.compute_output_shape((None, *shape[1:])) == (None, *y.shape[1:])


@pytest.mark.parametrize("n", [1, 3, 5])
def test_repeat_vector(rng, n):
    x = rng.normal(size=(4, 6)).astype("float32")
    y = RepeatVector(n)(x)
    assert y.shape == (4, n, 6)
    for step in range(n):
        np.testing.assert_array_equal(y[:, step, :], x)
    inp = Input((6,))
    assert RepeatVector(n)(inp).shape == (None, n, 6)


# ---- ActivityRegularization ----------------------------------------------------------


@pytest.mark.parametrize(("l1", "l2"), [(0.1, 0.0), (0.0, 0.02), (0.3, 0.05)])
def test_activity_regularization_is_identity_and_adds_penalty(rng, l1, l2):
    x = rng.normal(size=(5, 4)).astype("float32")
    inp = Input((4,))
    model = Model(inp, ActivityRegularization(l1=l1, l2=l2)(inp))
    y = model(x, training=True)
    np.testing.assert_array_equal(y, x)
    x64 = x.astype(np.float64)
    expected = l1 * np.abs(x64).sum() + l2 * np.square(x64).sum()  # not divided by N
    assert len(model.losses) == 1
    close(model.losses[0], expected)


# ---- Masking -------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    x=arrays(
        np.float32,
        st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 3)),
        elements=st.sampled_from([0.0, 1.0, -2.0, 3.5]),
    ),
    mask_value=st.sampled_from([0.0, 1.0, -2.0]),
)
def test_masking_mask_and_values(x, mask_value):
    layer = Masking(mask_value=mask_value)
    y, mask = layer.run(x)
    expected_mask = np.zeros(x.shape[:2], dtype=bool)
    for n, t in np.ndindex(*x.shape[:2]):
        expected_mask[n, t] = any(v != mask_value for v in x[n, t])
    np.testing.assert_array_equal(mask, expected_mask)
    for n, t in np.ndindex(*x.shape[:2]):
        if expected_mask[n, t]:
            np.testing.assert_array_equal(y[n, t], x[n, t])
        else:
            np.testing.assert_array_equal(y[n, t], np.zeros(x.shape[2]))


def test_masking_is_per_sample_and_nan_never_masks():
    x = np.zeros((2, 3, 2), dtype="float32")
    x[0, 1] = [1.0, 0.0]
    x[1, 0] = [np.nan, 0.0]
    x[1, 2] = [np.nan, np.nan]
    y, mask = Masking(0.0).run(x)
    np.testing.assert_array_equal(mask, [[False, True, False], [True, False, True]])
    np.testing.assert_array_equal(y[0, 1], [1.0, 0.0])
    assert np.isnan(y[1, 0, 0]) and np.isnan(y[1, 2]).all()
    # A mask value of NaN masks nothing either: NaN != NaN.
    _, nan_mask = Masking(float("nan")).run(np.full((1, 2, 2), np.nan, dtype="float32"))
    assert nan_mask.all()


# ---- Input / InputLayer --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected_shape"),
    [
        ({"shape": (3,)}, (None, 3)),
        ({"shape": (4, 5)}, (None, 4, 5)),
        ({"batch_shape": (8, 3)}, (8, 3)),
        ({"shape": (3,), "batch_shape": (2, 7)}, (2, 7)),  # batch_shape wins
        ({"shape": (3,), "batch_size": 6}, (6, 3)),
    ],
)
def test_input_shapes(kwargs, expected_shape):
    tensor = Input(**kwargs)
    assert tensor.shape == expected_shape
    layer = tensor.history[0]
    assert isinstance(layer, InputLayer)
    assert layer.batch_input_shape == expected_shape


@pytest.mark.parametrize(
    ("dtype", "expected"), [(None, "float32"), ("float64", "float64"), ("int32", "int32")]
)
def test_input_dtype(dtype, expected):
    tensor = Input((3,), dtype=dtype)
    assert tensor.dtype == expected
    model = Model(tensor, Lambda(lambda v: v * 2)(tensor))
    y = model.predict(np.ones((2, 3), dtype="float64"))
    assert y.dtype == np.dtype(expected)
    np.testing.assert_array_equal(y, np.full((2, 3), 2))


def test_input_sparse_not_supported():
    with pytest.raises(NotSupportedError, match="sparse"):
        Input((3,), sparse=True)
    with pytest.raises(NotSupportedError, match="sparse"):
        InputLayer(input_shape=(3,), sparse=True)


def test_input_needs_a_shape():
    with pytest.raises(ValueError, match="shape"):
        Input()


def test_input_tensor_constant_is_fed_by_the_model():
    constant = np.array([[1.0, 2.0, 3.0]], dtype="float32")
    const_in = Input(tensor=constant)
    assert const_in.shape == (1, 3)
    x_in = Input((3,))
    product = Lambda(lambda xs: xs[0] * xs[1])([x_in, const_in])
    model = Model([x_in, const_in], product)
    x = np.arange(12, dtype="float32").reshape(4, 3)
    np.testing.assert_array_equal(model(x), x * constant)  # only x is passed


def test_input_tensor_constant_in_predict():
    constant = np.array([[1.0, 2.0, 3.0]], dtype="float32")
    const_in = Input(tensor=constant)
    x_in = Input((3,))
    model = Model([x_in, const_in], Lambda(lambda xs: xs[0] * xs[1])([x_in, const_in]))
    x = np.arange(15, dtype="float32").reshape(5, 3)
    np.testing.assert_array_equal(model.predict(x, batch_size=2), x * constant)


# ---- Lambda --------------------------------------------------------------------------


def antirectifier(x):
    x -= K.mean(x, axis=1, keepdims=True)
    x = K.l2_normalize(x, axis=1)
    pos = K.relu(x)
    neg = K.relu(-x)
    return K.concatenate([pos, neg], axis=1)


def antirectifier_output_shape(input_shape):
    shape = list(input_shape)
    assert len(shape) == 2  # only valid for 2D tensors
    shape[-1] *= 2
    return tuple(shape)


def antirectifier_reference(x):
    out = np.zeros((x.shape[0], 2 * x.shape[1]))
    for n in range(x.shape[0]):
        row = [float(v) for v in x[n]]
        mean = sum(row) / len(row)
        centred = [v - mean for v in row]
        norm = math.sqrt(sum(v * v for v in centred))
        unit = [v / max(norm, 1e-12) for v in centred]
        out[n] = [max(v, 0.0) for v in unit] + [max(-v, 0.0) for v in unit]
    return out


@pytest.mark.parametrize("output_shape", [antirectifier_output_shape, None])
def test_lambda_antirectifier_docs_example(rng, output_shape):
    features = 5
    model = Sequential()
    model.add(Dense(features, input_shape=(3,)))
    model.add(Lambda(antirectifier, output_shape=output_shape))
    assert model.output_shape == (None, 2 * features)
    x = rng.normal(size=(4, 3)).astype("float32")
    kernel, bias = model.layers[0].get_weights()
    close(model.predict(x), antirectifier_reference(x @ kernel + bias))
    direct = rng.normal(size=(6, features)).astype("float32")
    close(model.layers[1](direct), antirectifier_reference(direct))


def test_lambda_does_not_modify_its_input(rng):
    """The docs' antirectifier subtracts in place; the caller's array must survive."""
    x = rng.normal(size=(3, 4)).astype("float32")
    original = x.copy()
    Lambda(antirectifier)(x)
    np.testing.assert_array_equal(x, original)
    # A sibling branch reading the same input sees the original values.
    inp = Input((4,))
    model = Model(inp, [Lambda(antirectifier)(inp), Lambda(lambda v: v + 0)(inp)])
    _, passthrough = model.predict(x)
    np.testing.assert_array_equal(passthrough, original)


@pytest.mark.parametrize(
    ("function", "output_shape", "input_shape", "expected_shape"),
    [
        (lambda v: v**2, None, (None, 3), (None, 3)),
        (lambda v: v[:, :2], None, (None, 5), (None, 2)),
        (lambda v: np.sum(v, axis=1), None, (None, 4, 3), (None, 3)),
        (lambda v: np.concatenate([v, v], -1), (6,), (None, 3), (None, 6)),
        (
            lambda v: v.reshape(v.shape[0], -1),
            lambda s: (s[0], s[1] * s[2]),
            (None, 2, 3),
            (None, 6),
        ),
        (lambda v: v[:, None, :], [1, 4], (None, 4), (None, 1, 4)),
        (lambda v: v.T, None, (7, 2), (2, 7)),
    ],
)
def test_lambda_output_shapes(rng, function, output_shape, input_shape, expected_shape):
    tensor = Lambda(function, output_shape=output_shape)(Input(batch_shape=input_shape))
    assert tensor.shape == expected_shape
    concrete = [5 if d is None else d for d in input_shape]
    value = Lambda(function)(rng.normal(size=concrete).astype("float32"))
    assert value.shape == tuple(5 if d is None else d for d in expected_shape)


def test_lambda_arguments(rng):
    x = rng.normal(size=(3, 4)).astype("float32")
    layer = Lambda(
        lambda v, scale, shift: v * scale + shift,
        arguments={"scale": 3.0, "shift": np.arange(4, dtype="float32")},
    )
    close(layer(x), x * 3.0 + np.arange(4))


def test_lambda_hadamard_product_of_two_inputs(rng):
    a_in, b_in = Input((4,)), Input((4,))
    product = Lambda(lambda xs: xs[0] * xs[1])([a_in, b_in])
    assert product.shape == (None, 4)
    model = Model([a_in, b_in], product)
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    close(model.predict([a, b]), (a * b).astype("float32"))


def test_lambda_several_outputs(rng):
    inp = Input((3,))
    doubled, total = Lambda(lambda v: [v * 2, v.sum(-1, keepdims=True)])(inp)
    assert doubled.shape == (None, 3) and total.shape == (None, 1)
    model = Model(inp, [doubled, total])
    assert model.output_shape == [(None, 3), (None, 1)]
    x = rng.normal(size=(4, 3)).astype("float32")
    y_doubled, y_total = model.predict(x)
    close(y_doubled, 2 * x)
    close(y_total, x.sum(-1, keepdims=True))


def test_lambda_masks(rng):
    x = np.zeros((2, 4, 2), dtype="float32")
    x[0, 1] = 1
    x[1, 3] = 5
    fixed = np.array([[True, False, True, True], [False, True, True, True]])
    _, mask = Lambda(lambda v: v * 2, mask=fixed).run(x, mask=np.ones((2, 4), bool))
    np.testing.assert_array_equal(mask, fixed)
    invert = Lambda(lambda v: v, mask=lambda inputs, m: ~m)
    _, mask = invert.run(x, mask=fixed)
    np.testing.assert_array_equal(mask, ~fixed)
    # The function itself receives the mask when it takes one.
    seen = Lambda(lambda v, mask: v * mask[..., None])
    close(seen(x, mask=fixed), x * fixed[..., None])
