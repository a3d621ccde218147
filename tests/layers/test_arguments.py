"""Every constructor argument of every layer, one table per behaviour.

Each row is checked against an expectation computed here: a hand formula, a second
NumPy implementation (a sliding-window convolution, a step-by-step LSTM) or the
Keras 2.2 documentation/source semantics written out by hand.
"""

import json
import re

import numpy as np
import pytest

from layerserve import backend as K
from layerserve import constraints, initializers, regularizers
from layerserve.errors import ConfigError, NotSupportedError, ShapeError
from layerserve.layers import (
    LSTM,
    Activation,
    ActivityRegularization,
    Conv2D,
    Dense,
    DepthwiseConv2D,
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
from layerserve.models import Model, Sequential, model_from_json
from layerserve.serialization import serialize

RTOL, ATOL = 1e-5, 1e-6
F64_RTOL, F64_ATOL = 1e-12, 1e-13


# ---- independent references --------------------------------------------------------------


def hard_sigmoid(v):
    return np.clip(0.2 * v + 0.5, 0.0, 1.0)


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def linear(v):
    return v


def relu(v):
    return np.maximum(v, 0.0)


def conv_valid(x, kernel, bias=None):
    """Stride-1 'valid' cross-correlation of NHWC ``x`` with an HWIO kernel, written as an
    einsum over sliding windows (not the layer's per-tap loop)."""
    x = np.asarray(x, dtype=np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(x, kernel.shape[:2], axis=(1, 2))
    y = np.einsum("nhwcij,ijcf->nhwf", windows, np.asarray(kernel, dtype=np.float64))
    return y if bias is None else y + bias


def lstm_ref(x, weights, activation=np.tanh, gate=hard_sigmoid, mask=None, go_backwards=False):
    """Gates i, f, c, o in float64; a masked step carries h and c over."""
    x = np.asarray(x, dtype=np.float64)
    kernel, recurrent = (np.asarray(w, dtype=np.float64) for w in weights[:2])
    units = recurrent.shape[0]
    bias = np.asarray(weights[2], dtype=np.float64) if len(weights) > 2 else np.zeros(4 * units)
    h = np.zeros((x.shape[0], units))
    c = np.zeros((x.shape[0], units))
    steps = range(x.shape[1] - 1, -1, -1) if go_backwards else range(x.shape[1])
    sequence = []
    for t in steps:
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f = gate(z[:, :units]), gate(z[:, units : 2 * units])
        g, o = activation(z[:, 2 * units : 3 * units]), gate(z[:, 3 * units :])
        c_new = f * c + i * g
        h_new = o * activation(c_new)
        if mask is not None:
            keep = mask[:, t][:, None]
            h_new, c_new = np.where(keep, h_new, h), np.where(keep, c_new, c)
        h, c = h_new, c_new
        sequence.append(h)
    return np.stack(sequence, axis=1), h, c


def random_weights(layer, rng, scale=1.0):
    """Replace every weight of a built layer by normal noise (biases included)."""
    layer.set_weights([rng.normal(0.0, scale, w.shape) for w in layer.get_weights()])
    return layer.get_weights()


def built(layer, shape, dtype="float32"):
    layer(np.zeros(shape, dtype=dtype))
    return layer


# ---- name= (and the Keras 2.2 default names) ----------------------------------------------

NAMED_LAYERS = [
    pytest.param(lambda **kw: Dense(2, **kw), "dense", id="Dense"),
    pytest.param(lambda **kw: Activation("relu", **kw), "activation", id="Activation"),
    pytest.param(lambda **kw: Dropout(0.5, **kw), "dropout", id="Dropout"),
    pytest.param(lambda **kw: SpatialDropout1D(0.5, **kw), "spatial_dropout1d", id="SD1D"),
    pytest.param(lambda **kw: SpatialDropout2D(0.5, **kw), "spatial_dropout2d", id="SD2D"),
    pytest.param(lambda **kw: SpatialDropout3D(0.5, **kw), "spatial_dropout3d", id="SD3D"),
    pytest.param(lambda **kw: Flatten(**kw), "flatten", id="Flatten"),
    pytest.param(lambda **kw: Reshape((2,), **kw), "reshape", id="Reshape"),
    pytest.param(lambda **kw: Permute((1,), **kw), "permute", id="Permute"),
    pytest.param(lambda **kw: RepeatVector(2, **kw), "repeat_vector", id="RepeatVector"),
    pytest.param(lambda **kw: Lambda(linear, **kw), "lambda", id="Lambda"),
    pytest.param(
        lambda **kw: ActivityRegularization(**kw),
        "activity_regularization",
        id="ActivityRegularization",
    ),
    pytest.param(lambda **kw: Masking(**kw), "masking", id="Masking"),
    pytest.param(lambda **kw: Conv2D(2, 3, **kw), "conv2d", id="Conv2D"),
    pytest.param(lambda **kw: LSTM(2, **kw), "lstm", id="LSTM"),
    pytest.param(lambda **kw: InputLayer(input_shape=(2,), **kw), "input", id="InputLayer"),
    pytest.param(lambda **kw: Sequential(**kw), "sequential", id="Sequential"),
    pytest.param(lambda **kw: Model(**kw), "model", id="Model"),
]


@pytest.mark.parametrize(("make", "prefix"), NAMED_LAYERS)
def test_name_argument_and_default_names(make, prefix):
    """Keras 2.2 names unnamed layers ``<snake_case class>_<n>``, counting per prefix."""
    first, second = make(), make()
    numbers = []
    for layer in (first, second):
        match = re.fullmatch(rf"{prefix}_(\d+)", layer.name)
        assert match, layer.name
        numbers.append(int(match.group(1)))
    assert numbers[1] == numbers[0] + 1
    named = make(name="my_layer")
    assert named.name == "my_layer"
    if not isinstance(named, Model):  # a model's config is its graph, not its name
        assert named.get_config()["name"] == "my_layer"


def test_name_argument_reaches_model_lookup_and_summary():
    model = Sequential([Dense(3, input_shape=(2,), name="hidden"), Dense(1, name="out")])
    assert model.get_layer("hidden") is model.layers[0]
    assert model.get_layer(index=1).name == "out"
    lines = []
    model.summary(print_fn=lines.append)
    assert any(line.startswith("hidden (Dense)") for line in lines)
    with pytest.raises(ConfigError, match="hidden"):
        Sequential([Dense(3, input_shape=(2,), name="hidden"), Dense(1, name="hidden")])


# ---- trainable= ------------------------------------------------------------------------------

FROZEN = [
    pytest.param(lambda **kw: Dense(3, **kw), (2, 4), [(4, 3), (3,)], id="Dense"),
    pytest.param(lambda **kw: Dense(3, use_bias=False, **kw), (2, 4), [(4, 3)], id="Dense-no-bias"),
    pytest.param(lambda **kw: Conv2D(2, 2, **kw), (1, 4, 4, 3), [(2, 2, 3, 2), (2,)], id="Conv2D"),
    pytest.param(lambda **kw: LSTM(2, **kw), (1, 3, 5), [(5, 8), (2, 8), (8,)], id="LSTM"),
]


@pytest.mark.parametrize(("make", "shape", "weight_shapes"), FROZEN)
def test_trainable_false_moves_every_weight_to_non_trainable(rng, make, shape, weight_shapes):
    frozen = built(make(trainable=False), shape)
    assert frozen.trainable_weights == []
    assert [w.shape for w in frozen.non_trainable_weights] == weight_shapes
    assert [w.shape for w in frozen.get_weights()] == weight_shapes  # order unchanged
    assert frozen.get_config()["trainable"] is False
    assert type(frozen).from_config(frozen.get_config()).trainable is False
    # Freezing changes bookkeeping only: the numbers equal an unfrozen twin's.
    twin = built(make(), shape)
    assert [w.shape for w in twin.trainable_weights] == weight_shapes
    twin.set_weights(random_weights(frozen, rng))
    x = rng.normal(size=shape).astype("float32")
    np.testing.assert_array_equal(frozen(x), twin(x))
    # The attribute works after construction too, as in Keras.
    twin.trainable = False
    assert twin.trainable_weights == [] and len(twin.non_trainable_weights) == len(weight_shapes)
    model = Sequential([InputLayer(input_shape=shape[1:]), frozen])
    total = sum(int(np.prod(s)) for s in weight_shapes)
    assert model.trainable_weights == []
    assert model.count_params() == total
    lines = []
    model.summary(print_fn=lines.append)
    assert f"Non-trainable params: {total:,}" in lines


def test_frozen_nested_model_hides_its_weights_from_the_outer_model():
    inner = Sequential([Dense(3, input_shape=(2,))], trainable=False)
    x_in = Input((2,))
    outer = Model(x_in, Dense(1)(inner(x_in)))
    assert inner.trainable_weights == []
    assert [w.shape for w in outer.trainable_weights] == [(3, 1), (1,)]
    assert [w.shape for w in outer.non_trainable_weights] == [(2, 3), (3,)]


# ---- weights= --------------------------------------------------------------------------------


def _dense_expected(x, weights):
    return x.astype(np.float64) @ weights[0] + (weights[1] if len(weights) > 1 else 0.0)


def _conv_expected(x, weights):
    return conv_valid(x, weights[0], weights[1] if len(weights) > 1 else None)


WITH_WEIGHTS = [
    pytest.param(lambda **kw: Dense(3, **kw), (4, 5), [(5, 3), (3,)], _dense_expected, id="Dense"),
    pytest.param(
        lambda **kw: Dense(3, use_bias=False, **kw),
        (2, 3, 5),
        [(5, 3)],
        _dense_expected,
        id="Dense-no-bias-rank3",
    ),
    pytest.param(
        lambda **kw: Conv2D(2, (2, 3), **kw),
        (2, 4, 5, 3),
        [(2, 3, 3, 2), (2,)],
        _conv_expected,
        id="Conv2D",
    ),
    pytest.param(
        lambda **kw: LSTM(3, return_sequences=True, **kw),
        (2, 4, 5),
        [(5, 12), (3, 12), (12,)],
        lambda x, w: lstm_ref(x, w)[0],
        id="LSTM",
    ),
]


@pytest.mark.parametrize("route", ["eager", "sequential"])
@pytest.mark.parametrize(("make", "shape", "weight_shapes", "expected"), WITH_WEIGHTS)
def test_weights_argument_sets_the_initial_weights(
    rng, make, shape, weight_shapes, expected, route
):
    """``weights=[...]`` replaces the initializers' values when the layer is built."""
    weights = [rng.normal(size=s).astype("float32") for s in weight_shapes]
    x = rng.normal(size=shape).astype("float32")
    if route == "eager":
        layer = make(weights=weights)
        y = layer(x)
    else:
        layer = make(weights=weights, input_shape=shape[1:])
        model = Sequential([layer])  # built (and the weights set) when added
        for got, want in zip(model.get_weights(), weights, strict=True):
            np.testing.assert_array_equal(got, want)
        y = model.predict(x)
    for got, want in zip(layer.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(y, expected(x, weights), rtol=RTOL, atol=1e-5)


# ---- input_shape= / batch_input_shape= / batch_size= ------------------------------------------

BATCHED_FIRST_LAYERS = [
    pytest.param(lambda **kw: [Dense(2, **kw)], (4,), id="Dense"),
    pytest.param(lambda **kw: [Conv2D(2, 2, **kw)], (4, 4, 1), id="Conv2D"),
    pytest.param(lambda **kw: [LSTM(2, **kw)], (5, 3), id="LSTM"),
    pytest.param(lambda **kw: [Flatten(**kw)], (2, 3), id="Flatten"),
    pytest.param(lambda **kw: [Masking(**kw), LSTM(2)], (5, 3), id="Masking"),
    pytest.param(lambda **kw: [InputLayer(**kw), Dense(2)], (4,), id="InputLayer"),
]


@pytest.mark.parametrize(
    "how",
    ["input_shape+batch_size", "batch_input_shape"],
)
@pytest.mark.parametrize(("make", "sample_shape"), BATCHED_FIRST_LAYERS)
def test_batch_size_fixes_the_batch_axis(rng, make, sample_shape, how):
    if how == "batch_input_shape":
        layers = make(batch_input_shape=(3, *sample_shape))
    else:
        layers = make(input_shape=sample_shape, batch_size=3)
    model = Sequential(layers)
    assert model.input_shape == (3, *sample_shape)
    assert model.output_shape[0] == 3
    assert Sequential.from_config(model.get_config()).input_shape == (3, *sample_shape)
    assert model.predict(rng.normal(size=(3, *sample_shape))).shape[0] == 3
    with pytest.raises(ShapeError, match=r"\(3, "):
        model.predict(rng.normal(size=(2, *sample_shape)))


@pytest.mark.parametrize(("make", "sample_shape"), BATCHED_FIRST_LAYERS[:-1])
def test_batch_size_without_input_shape_is_ignored(make, sample_shape):
    """Keras 2.2 only reads ``batch_size`` together with ``input_shape``."""
    layer = make(batch_size=3)[0]
    assert "batch_input_shape" not in layer.get_config()
    assert not hasattr(layer, "batch_input_shape")


# ---- dtype= ------------------------------------------------------------------------------------

TYPED = [
    pytest.param(
        lambda **kw: Dense(3, activation="tanh", **kw),
        (4, 5),
        lambda x, w: np.tanh(x @ w[0] + w[1]),
        id="Dense",
    ),
    pytest.param(
        lambda **kw: Conv2D(2, (2, 2), **kw),
        (2, 4, 3, 2),
        lambda x, w: conv_valid(x, w[0], w[1]),
        id="Conv2D",
    ),
    pytest.param(lambda **kw: LSTM(2, **kw), (3, 4, 2), lambda x, w: lstm_ref(x, w)[1], id="LSTM"),
]


@pytest.mark.parametrize(
    ("dtype", "input_dtype", "rtol", "atol"),
    [("float64", "float32", F64_RTOL, F64_ATOL), ("float32", "float64", RTOL, ATOL)],
)
@pytest.mark.parametrize(("make", "shape", "expected"), TYPED)
def test_dtype_argument_sets_weights_outputs_and_precision(
    rng, make, shape, expected, dtype, input_dtype, rtol, atol
):
    """Layers with weights hold them in ``dtype``, cast inputs to it and compute in it:
    a float64 layer matches a float64 formula to 1e-12 (float32 arithmetic could not)."""
    layer = built(make(dtype=dtype), shape, input_dtype)
    weights = random_weights(layer, rng)
    assert all(w.dtype == np.dtype(dtype) for w in weights)
    assert layer.get_config()["dtype"] == dtype
    x = rng.normal(size=shape).astype(input_dtype)
    y = layer(x)
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_allclose(
        y, expected(x.astype(np.float64), [w.astype(np.float64) for w in weights]), rtol, atol
    )
    # Symbolically the output tensor has the layer's dtype, and so do predictions.
    x_in = Input(shape[1:], dtype=input_dtype)
    out = make(dtype=dtype)(x_in)
    assert out.dtype == dtype
    assert Model(x_in, out).predict(x).dtype == np.dtype(dtype)


@pytest.mark.parametrize(("make", "shape", "expected"), TYPED)
def test_floatx_is_the_default_dtype(rng, make, shape, expected):
    previous = K.floatx()
    K.set_floatx("float64")
    try:
        layer = built(make(), shape)
    finally:
        K.set_floatx(previous)
    assert all(w.dtype == np.float64 for w in layer.get_weights())
    assert "dtype" not in layer.get_config()  # not given, so not stored (Keras 2.2)
    assert layer(rng.normal(size=shape).astype("float32")).dtype == np.float64


# ---- initializers ------------------------------------------------------------------------------

INITIALIZED = [
    pytest.param(
        Dense(3, kernel_initializer="ones", bias_initializer=initializers.Constant(0.5)),
        (2, 4),
        [np.ones((4, 3)), np.full(3, 0.5)],
        id="Dense-ones-constant",
    ),
    pytest.param(
        Dense(2, kernel_initializer=initializers.Identity(gain=2.0), bias_initializer="ones"),
        (1, 4),
        [2.0 * np.vstack([np.eye(2), np.eye(2)]), np.ones(2)],  # Keras 2.2 tiles eyes
        id="Dense-identity",
    ),
    pytest.param(
        Conv2D(2, 2, kernel_initializer=initializers.Constant(0.25), bias_initializer="ones"),
        (1, 3, 3, 3),
        [np.full((2, 2, 3, 2), 0.25), np.ones(2)],
        id="Conv2D",
    ),
    pytest.param(
        LSTM(
            2,
            kernel_initializer="zeros",
            recurrent_initializer="identity",
            bias_initializer="ones",
            unit_forget_bias=False,
        ),
        (1, 3, 4),
        [np.zeros((4, 8)), np.hstack([np.eye(2)] * 4), np.ones(8)],
        id="LSTM-identity-recurrent",
    ),
    pytest.param(
        LSTM(2, kernel_initializer="ones", bias_initializer=initializers.Constant(0.5)),
        (1, 3, 4),
        [np.ones((4, 8)), None, np.array([0.5, 0.5, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5])],
        id="LSTM-unit-forget-bias",
    ),
]


@pytest.mark.parametrize(("layer", "shape", "expected"), INITIALIZED)
def test_initializer_arguments_give_the_initial_weights(layer, shape, expected):
    weights = built(layer, shape).get_weights()
    assert len(weights) == len(expected)
    for got, want in zip(weights, expected, strict=True):
        if want is not None:
            np.testing.assert_array_equal(got, want)


DEFAULT_KERNELS = [
    # (layer, input shape, fan_in, fan_out) of the glorot_uniform default kernel
    pytest.param(Dense(300), (1, 200), 200, 300, id="Dense"),
    pytest.param(Conv2D(16, 3), (1, 5, 5, 8), 3 * 3 * 8, 3 * 3 * 16, id="Conv2D"),
    pytest.param(LSTM(8), (1, 2, 10), 10, 32, id="LSTM"),
]


@pytest.mark.parametrize(("layer", "shape", "fan_in", "fan_out"), DEFAULT_KERNELS)
def test_default_kernel_is_glorot_uniform_and_bias_zero(layer, shape, fan_in, fan_out):
    kernel, *rest = built(layer, shape).get_weights()
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(kernel).max() <= limit * (1 + 1e-6)
    assert np.abs(kernel).max() >= 0.9 * limit  # >= 320 draws: the bound is reached
    bias = rest[-1]
    if isinstance(layer, LSTM):  # unit_forget_bias: ones for the forget gate
        np.testing.assert_array_equal(bias, np.r_[np.zeros(8), np.ones(8), np.zeros(16)])
    else:
        np.testing.assert_array_equal(bias, np.zeros_like(bias))


# ---- weight regularizers -----------------------------------------------------------------------


def _l1l2(l1, l2):
    return lambda w: l1 * np.abs(w).sum() + l2 * np.square(w).sum()


REGULARIZED = [
    # (layer, input shape, weight index, hand penalty of that weight)
    pytest.param(
        Dense(3, kernel_regularizer=regularizers.L1L2(l1=0.5)),
        (1, 4),
        0,
        _l1l2(0.5, 0),
        id="Dense-kernel",
    ),
    pytest.param(
        Dense(3, bias_regularizer=regularizers.L1L2(l1=0.125, l2=0.25)),
        (1, 4),
        1,
        _l1l2(0.125, 0.25),
        id="Dense-bias",
    ),
    pytest.param(
        Conv2D(2, 2, kernel_regularizer=regularizers.L1L2(l2=0.25)),
        (1, 4, 4, 3),
        0,
        _l1l2(0, 0.25),
        id="Conv2D-kernel",
    ),
    pytest.param(
        Conv2D(2, 2, bias_regularizer=regularizers.L1L2(l1=0.5)),
        (1, 4, 4, 3),
        1,
        _l1l2(0.5, 0),
        id="Conv2D-bias",
    ),
    pytest.param(
        LSTM(2, kernel_regularizer=regularizers.L1L2(l1=0.25)),
        (1, 3, 4),
        0,
        _l1l2(0.25, 0),
        id="LSTM-kernel",
    ),
    pytest.param(
        LSTM(2, recurrent_regularizer=regularizers.L1L2(l2=0.5)),
        (1, 3, 4),
        1,
        _l1l2(0, 0.5),
        id="LSTM-recurrent",
    ),
    pytest.param(
        LSTM(2, bias_regularizer=regularizers.L1L2(l1=0.125, l2=0.25)),
        (1, 3, 4),
        2,
        _l1l2(0.125, 0.25),
        id="LSTM-bias",
    ),
]


@pytest.mark.parametrize(("layer", "shape", "index", "penalty"), REGULARIZED)
def test_weight_regularizer_arguments_add_their_penalty(rng, layer, shape, index, penalty):
    built(layer, shape)
    for _ in range(2):  # the penalty follows the current weights
        weights = random_weights(layer, rng)
        assert layer.losses == pytest.approx([penalty(weights[index].astype(np.float64))])
    model = Sequential([InputLayer(input_shape=shape[1:]), layer])
    assert model.losses == pytest.approx(layer.losses)
    # The regularizer stored in the config gives the same penalty.
    restored = regularizers.get(layer.get_config()[_weight_key(layer, index, "regularizer")])
    w = weights[index].astype(np.float64)
    assert restored(w) == pytest.approx(penalty(w))


def _weight_key(layer, index, kind):
    names = ["kernel", "recurrent", "bias"] if isinstance(layer, LSTM) else ["kernel", "bias"]
    return f"{names[index]}_{kind}"


# ---- activity_regularizer= ---------------------------------------------------------------------

ACTIVITY = [
    pytest.param(lambda **kw: Conv2D(2, 2, **kw), (3, 4, 4, 1), id="Conv2D"),
    pytest.param(lambda **kw: LSTM(2, **kw), (3, 4, 2), id="LSTM"),
    pytest.param(
        lambda **kw: LSTM(2, return_sequences=True, return_state=True, **kw),
        (3, 4, 2),
        id="LSTM-return-state",
    ),
    # The base-layer keyword, on layers without weights (tf.keras and Keras 3 accept it).
    pytest.param(lambda **kw: Activation("tanh", **kw), (3, 4), id="Activation"),
    pytest.param(lambda **kw: Reshape((-1,), **kw), (3, 2, 2), id="Reshape"),
    pytest.param(lambda **kw: Masking(**kw), (3, 4, 2), id="Masking"),
    pytest.param(lambda **kw: Lambda(lambda v: v * 2.0, **kw), (3, 4), id="Lambda"),
]


@pytest.mark.parametrize(("make", "shape"), ACTIVITY)
def test_activity_regularizer_argument_penalises_every_output(rng, make, shape):
    """Keras 2.2: one penalty per output tensor, summed over the batch (not divided)."""
    regularizer = regularizers.L1L2(l1=0.5, l2=0.25)
    layer = make(activity_regularizer=regularizer)
    x = rng.normal(size=shape).astype("float32")
    outputs = layer(x)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    expected = [_l1l2(0.5, 0.25)(np.asarray(y, dtype=np.float64)) for y in outputs]
    assert layer.losses == pytest.approx(expected, rel=1e-6)
    assert layer.get_config()["activity_regularizer"] == serialize(regularizer)


# ---- constraints and apply_constraints() -------------------------------------------------------


def _cap_columns(max_value, axis=0):
    def project(w):
        norms = np.sqrt(np.square(w).sum(axis=axis, keepdims=True))
        return w * np.minimum(1.0, max_value / norms)

    return project


def _unit_columns(w):
    return w / np.sqrt(np.square(w).sum(axis=0, keepdims=True))


def _norm_between(low, high):
    def project(w):
        norm = np.sqrt(np.square(w).sum())
        return w * np.clip(norm, low, high) / norm

    return project


CONSTRAINED = [
    # (layer, input shape, weight index, hand projection of that weight)
    pytest.param(
        Dense(3, kernel_constraint=constraints.NonNeg()),
        (1, 4),
        0,
        lambda w: np.maximum(w, 0.0),
        id="Dense-kernel-non_neg",
    ),
    pytest.param(
        Dense(3, bias_constraint=constraints.MaxNorm(0.5)),
        (1, 4),
        1,
        _cap_columns(0.5),
        id="Dense-bias-max_norm",
    ),
    pytest.param(
        Conv2D(2, 2, kernel_constraint=constraints.MaxNorm(1.0, axis=[0, 1, 2])),
        (1, 4, 4, 3),
        0,
        _cap_columns(1.0, axis=(0, 1, 2)),
        id="Conv2D-kernel-max_norm-per-filter",
    ),
    pytest.param(
        Conv2D(2, 2, bias_constraint="non_neg"),
        (1, 4, 4, 3),
        1,
        lambda w: np.maximum(w, 0.0),
        id="Conv2D-bias-non_neg",
    ),
    pytest.param(
        LSTM(2, kernel_constraint=constraints.UnitNorm()),
        (1, 3, 4),
        0,
        _unit_columns,
        id="LSTM-kernel-unit_norm",
    ),
    pytest.param(
        LSTM(2, recurrent_constraint=constraints.MaxNorm(0.5)),
        (1, 3, 4),
        1,
        _cap_columns(0.5),
        id="LSTM-recurrent-max_norm",
    ),
    pytest.param(
        LSTM(2, bias_constraint=constraints.MinMaxNorm(1.0, 2.0, rate=1.0)),
        (1, 3, 4),
        2,
        _norm_between(1.0, 2.0),
        id="LSTM-bias-min_max_norm",
    ),
]


@pytest.mark.parametrize(("layer", "shape", "index", "project"), CONSTRAINED)
def test_constraint_arguments_project_on_apply_constraints(rng, layer, shape, index, project):
    """Keras applies a constraint after each optimizer step, never in the forward pass."""
    built(layer, shape)
    before = random_weights(layer, rng, scale=3.0)
    before[index].flat[0] = -3.0  # something for every constraint of the table to change
    layer.set_weights(before)
    x = rng.normal(size=shape).astype("float32")
    y_before = layer(x)
    for got, want in zip(layer.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)  # calling does not constrain
    layer.apply_constraints()
    after = layer.get_weights()
    for i, (got, want) in enumerate(zip(after, before, strict=True)):
        if i == index:
            np.testing.assert_allclose(got, project(want.astype(np.float64)), rtol=1e-5, atol=1e-6)
            assert not np.allclose(got, want)  # the row really constrains something
        else:
            np.testing.assert_array_equal(got, want)
    assert not np.allclose(layer(x), y_before)  # the projected weight is the one used
    key = _weight_key(layer, index, "constraint")
    restored = constraints.get(layer.get_config()[key])
    np.testing.assert_allclose(restored(before[index]), after[index], rtol=1e-6)


# ---- LSTM: activation=, recurrent_activation= --------------------------------------------------

LSTM_ACTIVATIONS = [
    ("tanh", np.tanh),
    ("relu", relu),
    ("sigmoid", sigmoid),
    ("linear", linear),
    ("softsign", lambda v: v / (1.0 + np.abs(v))),
]


@pytest.mark.parametrize("gate_name", ["hard_sigmoid", "sigmoid", "tanh"])
@pytest.mark.parametrize(
    ("name", "activation"), LSTM_ACTIVATIONS, ids=[a for a, _ in LSTM_ACTIVATIONS]
)
def test_lstm_activation_arguments(rng, name, activation, gate_name):
    gates = {"hard_sigmoid": hard_sigmoid, "sigmoid": sigmoid, "tanh": np.tanh}
    layer = built(
        LSTM(3, activation=name, recurrent_activation=gate_name, return_sequences=True),
        (1, 2, 2),
    )
    weights = random_weights(layer, rng)
    x = rng.normal(size=(2, 5, 2)).astype("float32")
    expected, _, _ = lstm_ref(x, weights, activation=activation, gate=gates[gate_name])
    np.testing.assert_allclose(layer(x), expected, rtol=1e-4, atol=1e-5)
    assert layer.get_config()["activation"] == name
    assert layer.get_config()["recurrent_activation"] == gate_name


# ---- LSTM: implementation=, unroll=, use_cudnn= and inference-time dropout change nothing -----

EXECUTION_OPTIONS = [
    pytest.param({"implementation": 2}, 2, False, id="implementation-2"),
    pytest.param({"implementation": 0}, 1, False, id="implementation-0-is-1"),
    pytest.param({"unroll": True}, 1, True, id="unroll"),
    pytest.param({"implementation": 2, "unroll": True}, 2, True, id="implementation-2-unroll"),
    pytest.param({"use_cudnn": False}, 1, False, id="use_cudnn-False"),
    pytest.param(
        {"dropout": 0.4, "recurrent_dropout": 0.3, "seed": 1}, 1, False, id="dropout-at-inference"
    ),
]


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize(("kwargs", "implementation", "unroll"), EXECUTION_OPTIONS)
def test_lstm_execution_options_give_identical_results(
    rng, kwargs, implementation, unroll, go_backwards
):
    x = rng.normal(size=(4, 5, 3)).astype("float32")
    mask = np.array([[1, 1, 0, 1, 1], [0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 1]], bool)
    common = {"return_sequences": True, "return_state": True, "go_backwards": go_backwards}
    baseline = built(LSTM(3, **common), x.shape)
    weights = random_weights(baseline, rng)
    layer = built(LSTM(3, **common, **kwargs), x.shape)
    layer.set_weights(weights)
    got, _ = layer.run(x, mask=mask)
    want, _ = baseline.run(x, mask=mask)
    reference = lstm_ref(x, weights, mask=mask, go_backwards=go_backwards)
    for g, w, r in zip(got, want, reference, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=ATOL)
    config = layer.get_config()
    assert (config["implementation"], config["unroll"]) == (implementation, unroll)


@pytest.mark.parametrize(
    ("dropout", "recurrent_dropout", "stored"),
    [(1.5, 0.0, (1.0, 0.0)), (0.0, 2.0, (0.0, 1.0)), (-0.5, -1, (0.0, 0.0)), (1, 1, (1.0, 1.0))],
)
def test_lstm_dropout_rates_are_clamped_like_keras_2_2(rng, dropout, recurrent_dropout, stored):
    """Keras 2.2: ``min(1, max(0, rate))``, and a mask is drawn only for 0 < rate < 1."""
    layer = built(LSTM(3, dropout=dropout, recurrent_dropout=recurrent_dropout), (1, 4, 2))
    config = layer.get_config()
    assert (config["dropout"], config["recurrent_dropout"]) == stored
    x = rng.normal(size=(3, 4, 2)).astype("float32")
    np.testing.assert_array_equal(layer(x, training=True), layer(x))
    np.testing.assert_allclose(layer(x), lstm_ref(x, layer.get_weights())[1], rtol=RTOL, atol=ATOL)


# ---- Conv2D: activation=, use_bias= ------------------------------------------------------------

CONV_ACTIVATIONS = [
    (None, linear),
    ("linear", linear),
    ("relu", relu),
    ("tanh", np.tanh),
    ("sigmoid", sigmoid),
    ("softplus", lambda v: np.log1p(np.exp(v))),
    ("elu", lambda v: np.where(v > 0, v, np.expm1(v))),
    (relu, relu),  # a callable
]
CONV_IDS = ["None", "linear", "relu", "tanh", "sigmoid", "softplus", "elu", "callable"]


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize(
    ("activation", "reference"),
    CONV_ACTIVATIONS,
    ids=CONV_IDS,
)
def test_conv2d_activation_and_use_bias(rng, activation, reference, use_bias):
    layer = built(Conv2D(3, (2, 3), activation=activation, use_bias=use_bias), (1, 5, 6, 2))
    weights = random_weights(layer, rng)
    assert len(weights) == (2 if use_bias else 1)
    x = rng.normal(size=(2, 5, 6, 2)).astype("float32")
    expected = reference(conv_valid(x, weights[0], weights[1] if use_bias else None))
    np.testing.assert_allclose(layer(x), expected, rtol=RTOL, atol=1e-5)
    assert layer.get_config()["use_bias"] is use_bias
    assert layer.count_params() == 2 * 3 * 2 * 3 + (3 if use_bias else 0)


# ---- Lambda: arguments= survive get_config, to_json and model_from_json -----------------------

LAMBDA_ARGUMENTS = [
    pytest.param(lambda v, scale: v * scale, {"scale": 2.5}, lambda x: 2.5 * x, id="float"),
    pytest.param(
        lambda v, shift: v + shift,
        {"shift": np.array([1.0, -2.0, 0.5], dtype="float32")},
        lambda x: x + np.array([1.0, -2.0, 0.5]),
        id="float-array",
    ),
    pytest.param(
        lambda v, w: v @ w,
        {"w": np.arange(6, dtype="float32").reshape(3, 2)},
        lambda x: x @ np.arange(6.0).reshape(3, 2),
        id="matrix",
    ),
    pytest.param(
        lambda v, index: v[:, index],
        {"index": np.array([2, 0])},
        lambda x: x[:, [2, 0]],
        id="int-array",
    ),
    pytest.param(
        lambda v, axis, keepdims: v.sum(axis=axis, keepdims=keepdims),
        {"axis": 1, "keepdims": True},
        lambda x: x.sum(axis=1, keepdims=True),
        id="int-and-bool",
    ),
]


@pytest.mark.parametrize(("function", "arguments", "expected"), LAMBDA_ARGUMENTS)
def test_lambda_arguments_survive_config_and_json(rng, function, arguments, expected):
    x = rng.normal(size=(4, 3)).astype("float32")
    layer = Lambda(function, arguments=arguments, input_shape=(3,))
    np.testing.assert_allclose(layer(x), expected(x.astype(np.float64)), rtol=RTOL, atol=ATOL)
    stored = json.loads(json.dumps(layer.get_config()))["arguments"]  # plain JSON values
    assert stored == {
        k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in arguments.items()
    }
    model = Sequential([layer])
    clone = model_from_json(model.to_json(), safe_mode=False)
    np.testing.assert_allclose(
        clone.predict(x), expected(x.astype(np.float64)), rtol=RTOL, atol=ATOL
    )
    assert clone.output_shape == model.output_shape
    # Arrays stored as JSON lists come back as floatx arrays, so float32 stays float32.
    assert clone.predict(x).dtype == model.predict(x).dtype


def test_lstm_seed_survives_the_config():
    layer = LSTM(2, seed=7, dropout=0.5)
    rebuilt = LSTM.from_config(layer.get_config())
    assert rebuilt.seed == 7
    assert "seed" not in LSTM(2).get_config()  # Keras 2.2 configs have no seed


# ---- InputLayer / Input arguments --------------------------------------------------------------

INPUT_LAYERS = [
    # (kwargs, batch_input_shape, dtype, name or None)
    pytest.param({"batch_shape": (None, 5)}, (None, 5), "float32", None, id="batch_shape"),
    pytest.param({"batch_input_shape": (2, 5)}, (2, 5), "float32", None, id="batch_input_shape"),
    pytest.param(
        {"input_shape": (2, 3), "batch_size": 4}, (4, 2, 3), "float32", None, id="batch_size"
    ),
    pytest.param(
        {"input_shape": (3,), "dtype": "int32", "name": "ids"},
        (None, 3),
        "int32",
        "ids",
        id="dtype-and-name",
    ),
    pytest.param(
        {"input_tensor": np.zeros((2, 3), "float64")}, (2, 3), "float64", None, id="input_tensor"
    ),
    pytest.param({"input_shape": 4}, (None, 4), "float32", None, id="int-input_shape"),
]


@pytest.mark.parametrize(("kwargs", "batch_shape", "dtype", "name"), INPUT_LAYERS)
def test_input_layer_arguments(rng, kwargs, batch_shape, dtype, name):
    layer = InputLayer(**kwargs)
    assert layer.batch_input_shape == batch_shape
    assert layer.dtype == dtype
    assert layer.output.shape == batch_shape and layer.output.dtype == dtype
    config = layer.get_config()
    assert config["batch_input_shape"] == list(batch_shape)
    assert config["dtype"] == dtype and config["sparse"] is False
    if name is not None:
        assert layer.name == config["name"] == name
    clone = InputLayer.from_config(config)
    assert (clone.batch_input_shape, clone.dtype, clone.name) == (batch_shape, dtype, layer.name)
    model = Model(layer.output, Lambda(lambda v: v * 2)(layer.output))
    feed_shape = tuple(3 if d is None else d for d in batch_shape)
    value = rng.integers(-5, 5, size=feed_shape).astype("float64")
    y = model.predict(value) if layer.constant is None else model.predict([])
    assert y.dtype == np.dtype(dtype)
    if layer.constant is None:
        np.testing.assert_array_equal(y, (value.astype(dtype) * 2).astype(dtype))


def test_input_layer_optional_is_kept():
    assert InputLayer(input_shape=(3,), optional=True).optional is True
    assert InputLayer(input_shape=(3,)).optional is False


# ---- arguments layerserve refuses on purpose ---------------------------------------------------

NOT_SUPPORTED = [
    pytest.param(lambda: InputLayer(input_shape=(3,), ragged=True), "ragged", id="ragged"),
    pytest.param(lambda: Input((3,), sparse=True), "sparse", id="sparse"),
    pytest.param(lambda: LSTM(2, time_major=True), "time_major", id="time_major"),
    pytest.param(lambda: LSTM(2, stateful=True), "stateful", id="stateful"),
    pytest.param(lambda: DepthwiseConv2D(3, groups=2), "groups", id="groups"),
]


@pytest.mark.parametrize(("make", "argument"), NOT_SUPPORTED)
def test_unsupported_arguments_raise_a_clear_error(make, argument):
    with pytest.raises(NotSupportedError, match=argument) as info:
        make()
    assert "Received" in str(info.value)


# ---- positional arguments follow the documented signatures ---------------------------------

POSITIONAL = [
    pytest.param(
        lambda: Dense(4, "relu", False, "ones"),
        {
            "units": 4,
            "activation": "relu",
            "use_bias": False,
            "kernel_initializer": {"class_name": "Ones", "config": {}},
        },
        id="Dense",
    ),
    pytest.param(
        lambda: Conv2D(2, 3, 2, "same", "channels_first", 1, "tanh", False),
        {
            "filters": 2,
            "kernel_size": [3, 3],
            "strides": [2, 2],
            "padding": "same",
            "data_format": "channels_first",
            "dilation_rate": [1, 1],
            "activation": "tanh",
            "use_bias": False,
        },
        id="Conv2D",
    ),
    pytest.param(
        lambda: LSTM(3, "relu", "sigmoid", False),
        {"units": 3, "activation": "relu", "recurrent_activation": "sigmoid", "use_bias": False},
        id="LSTM",
    ),
    pytest.param(
        lambda: Dropout(0.25, [None, 1], 7),
        {"rate": 0.25, "noise_shape": [None, 1], "seed": 7},
        id="Dropout",
    ),
    pytest.param(
        lambda: SpatialDropout2D(0.5, "channels_first"),
        {"rate": 0.5, "data_format": "channels_first"},
        id="SpatialDropout2D",
    ),
    pytest.param(lambda: Masking(-1.0), {"mask_value": -1.0}, id="Masking"),
    pytest.param(lambda: ActivityRegularization(0.1, 0.2), {"l1": 0.1, "l2": 0.2}, id="ActReg"),
    pytest.param(lambda: Flatten("channels_first"), {"data_format": "channels_first"}, id="Flat"),
    pytest.param(lambda: Lambda(linear, (3,)), {"output_shape": [3]}, id="Lambda"),
]


@pytest.mark.parametrize(("make", "expected"), POSITIONAL)
def test_positional_arguments_follow_the_documented_order(make, expected):
    config = make().get_config()
    assert {key: config[key] for key in expected} == expected


# ---- every argument survives get_config -> from_config -----------------------------------------

FULL_CONFIGS = [
    pytest.param(
        lambda: Dense(
            3,
            activation="elu",
            use_bias=True,
            kernel_initializer=initializers.RandomNormal(0.0, 0.5, seed=3),
            bias_initializer="ones",
            kernel_regularizer=regularizers.L1L2(l1=0.5),
            bias_regularizer=regularizers.L1L2(l2=0.25),
            activity_regularizer=regularizers.L1L2(l1=0.125),
            kernel_constraint=constraints.MaxNorm(2.0),
            bias_constraint=constraints.NonNeg(),
            name="d",
            trainable=False,
            dtype="float64",
            input_dim=4,
        ),
        (2, 4),
        id="Dense",
    ),
    pytest.param(
        lambda: Conv2D(
            2,
            (2, 3),
            strides=(1, 1),
            padding="same",
            data_format="channels_first",
            dilation_rate=(2, 1),
            activation="relu",
            use_bias=False,
            kernel_initializer="he_normal",
            kernel_regularizer=regularizers.L1L2(l2=0.5),
            activity_regularizer=regularizers.L1L2(l1=0.25),
            kernel_constraint=constraints.UnitNorm(axis=[0, 1, 2]),
            batch_input_shape=(None, 3, 5, 5),
        ),
        (2, 3, 5, 5),
        id="Conv2D",
    ),
    pytest.param(
        lambda: LSTM(
            2,
            activation="softsign",
            recurrent_activation="sigmoid",
            use_bias=True,
            recurrent_initializer="glorot_normal",
            bias_initializer="ones",
            unit_forget_bias=False,
            recurrent_regularizer=regularizers.L1L2(l1=0.5),
            bias_constraint=constraints.MinMaxNorm(0.5, 1.0),
            dropout=0.25,
            recurrent_dropout=0.5,
            implementation=2,
            return_sequences=True,
            go_backwards=True,
            unroll=True,
            input_shape=(4, 3),
        ),
        (2, 4, 3),
        id="LSTM",
    ),
    pytest.param(lambda: Activation("selu", name="act"), (2, 3), id="Activation"),
    pytest.param(lambda: Dropout(0.3, noise_shape=(None, 1), seed=4), (2, 3), id="Dropout"),
    pytest.param(lambda: SpatialDropout1D(0.3, seed=1), (2, 3, 4), id="SpatialDropout1D"),
    pytest.param(
        lambda: SpatialDropout2D(0.3, data_format="channels_first"), (2, 3, 4, 4), id="SD2D"
    ),
    pytest.param(
        lambda: SpatialDropout3D(0.3, data_format="channels_last"), (2, 2, 2, 2, 3), id="SD3D"
    ),
    pytest.param(lambda: Flatten(data_format="channels_first"), (2, 3, 2, 2), id="Flatten"),
    pytest.param(lambda: Reshape((-1, 2), input_shape=(6,)), (2, 6), id="Reshape"),
    pytest.param(lambda: Permute((2, 1)), (2, 3, 4), id="Permute"),
    pytest.param(lambda: RepeatVector(3), (2, 4), id="RepeatVector"),
    pytest.param(lambda: ActivityRegularization(l1=0.5, l2=0.25), (2, 3), id="ActReg"),
    pytest.param(lambda: Masking(mask_value=1.5), (2, 3, 2), id="Masking"),
]


@pytest.mark.parametrize(("make", "shape"), FULL_CONFIGS)
def test_every_argument_survives_the_config(rng, make, shape):
    layer = make()
    config = layer.get_config()
    json.dumps(config)  # a Keras config is plain JSON
    clone = type(layer).from_config(json.loads(json.dumps(config)))
    assert clone.get_config() == config
    x = rng.normal(size=shape).astype("float32")
    y = layer(x)
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x), y)
    assert clone.losses == pytest.approx(layer.losses)
    assert [w.dtype for w in clone.get_weights()] == [w.dtype for w in layer.get_weights()]


# ---- a few remaining argument behaviours -------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: Dropout(0.5, seed=seed),
        lambda seed: SpatialDropout1D(0.5, seed=seed),
        lambda seed: SpatialDropout2D(0.5, seed=seed),
        lambda seed: SpatialDropout3D(0.5, seed=seed),
        lambda seed: LSTM(3, dropout=0.5, recurrent_dropout=0.5, seed=seed),
    ],
    ids=["Dropout", "SD1D", "SD2D", "SD3D", "LSTM"],
)
def test_seed_argument_makes_training_masks_reproducible(rng, make):
    shapes = {Dropout: (4, 6), SpatialDropout1D: (4, 5, 6), SpatialDropout2D: (4, 3, 3, 6)}
    shapes |= {SpatialDropout3D: (4, 2, 2, 2, 6), LSTM: (4, 5, 6)}
    probe = make(0)
    x = rng.uniform(0.5, 1.5, size=shapes[type(probe)]).astype("float32")
    a, b, other = make(11), make(11), make(12)
    for layer in (a, b, other):
        built(layer, x.shape)
    b.set_weights(a.get_weights())
    other.set_weights(a.get_weights())
    ys_a = [a(x, training=True) for _ in range(3)]
    ys_b = [b(x, training=True) for _ in range(3)]
    for ya, yb in zip(ys_a, ys_b, strict=True):
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(ys_a[1], ys_a[0])  # a sequence of masks, not one mask
    assert not np.array_equal(other(x, training=True), ys_a[0])
    np.testing.assert_array_equal(a(x), b(x))  # inference: no randomness at all


def test_spatial_dropout_ignores_noise_shape_like_keras(rng):
    """Keras 2.2 SpatialDropout computes its own noise shape; a user one is dropped."""
    x = rng.uniform(0.5, 1.5, size=(6, 4, 8)).astype("float32")
    given = SpatialDropout1D(0.5, noise_shape=(1, 1, 1), seed=3)
    plain = SpatialDropout1D(0.5, seed=3)
    y = given(x, training=True)
    np.testing.assert_array_equal(y, plain(x, training=True))
    kept = y != 0
    np.testing.assert_array_equal(kept, np.broadcast_to(kept[:, :1, :], kept.shape))
    assert kept.any() and (~kept).any()
    assert given.get_config()["noise_shape"] is None


@pytest.mark.parametrize("make", [lambda: Dropout(0.0), lambda: SpatialDropout2D(0.0)])
def test_rate_zero_is_the_identity_in_training(rng, make):
    x = rng.normal(size=(2, 3, 3, 2)).astype("float32")
    np.testing.assert_array_equal(make()(x, training=True), x)


def test_backend_set_epsilon_reaches_layer_constraints():
    """``K.set_epsilon`` is the fuzz factor of the norm constraints: w * 2 / (eps + |w|)."""
    layer = built(Dense(1, use_bias=False, kernel_constraint=constraints.MaxNorm(2.0)), (1, 2))
    previous = K.epsilon()
    K.set_epsilon(0.5)
    try:
        assert K.epsilon() == 0.5
        layer.set_weights([np.array([[3.0], [4.0]])])
        layer.apply_constraints()
    finally:
        K.set_epsilon(previous)
    np.testing.assert_allclose(layer.get_weights()[0], [[6.0 / 5.5], [8.0 / 5.5]], rtol=1e-6)
