"""Bidirectional against a hand-written SimpleRNN run forward and backward separately,
its ONNX export against the NumPy reference (batch 0, 1, 7, 64), and its errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rnn_wrapper_checks import (
    assert_export_matches,
    masked_sequences,
    random_weights,
    simple_rnn_by_hand,
)

from layerserve.errors import ConfigError, NotSupportedError, ShapeError
from layerserve.layers import (
    GRU,
    LSTM,
    Bidirectional,
    Dense,
    Input,
    Masking,
    SimpleRNN,
)
from layerserve.models import Model, model_from_json
from layerserve.serialization import keras_semantics

STEPS, FEATURES, UNITS = 5, 3, 4
MERGES = {
    "concat": lambda a, b: np.concatenate([a, b], -1),
    "sum": np.add,
    "mul": np.multiply,
    "ave": lambda a, b: (a + b) / 2,
}


def expected(x, weights, mask, merge_mode, return_sequences, return_state, zero_output):
    """The forward and the backward SimpleRNN computed apart, then merged."""
    forward = simple_rnn_by_hand(x, *weights[:3], mask, False, zero_output)
    backward = simple_rnn_by_hand(x, *weights[3:], mask, True, zero_output)
    if return_sequences:
        y, y_reversed = forward[0], backward[0][:, ::-1]
    else:
        y, y_reversed = forward[1], backward[1]
    heads = [y, y_reversed] if merge_mode is None else [MERGES[merge_mode](y, y_reversed)]
    return heads + ([forward[2], backward[2]] if return_state else [])


def build(merge_mode, return_sequences, return_state, rng):
    layer = Bidirectional(
        SimpleRNN(UNITS, return_sequences=return_sequences, return_state=return_state),
        merge_mode=merge_mode,
    )
    layer.build((None, STEPS, FEATURES))
    return layer, random_weights(layer, rng)


@pytest.mark.parametrize("version", ["3.15.1", "2.21.0", "2.2.4"])
@pytest.mark.parametrize("merge_mode", [*MERGES, None])
@pytest.mark.parametrize(("return_sequences", "return_state"), [(True, False), (False, True)])
@pytest.mark.parametrize("batch", [0, 1, 64])
def test_matches_the_two_directions_by_hand(
    version, merge_mode, return_sequences, return_state, batch
):
    rng = np.random.default_rng(batch)
    with keras_semantics(version):
        layer, weights = build(merge_mode, return_sequences, return_state, rng)
    x = masked_sequences(rng, (batch, STEPS, FEATURES))
    mask = np.any(x != 0, axis=-1)
    # tf.keras and Keras 3 make both halves emit zeros at masked steps when they return
    # sequences; Keras 2.2 repeats the previous output there.
    zero_output = return_sequences and version != "2.2.4"
    got = layer(x, mask=mask)
    got = got if isinstance(got, list) else [got]
    want = expected(x, weights, mask, merge_mode, return_sequences, return_state, zero_output)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(0, 9), steps=st.integers(1, 7))
def test_any_mask_matches_by_hand(seed, batch, steps):
    rng = np.random.default_rng(seed)
    with keras_semantics("3.15.1"):
        layer = Bidirectional(SimpleRNN(UNITS, return_sequences=True))
        layer.build((None, steps, FEATURES))
        weights = random_weights(layer, rng)
    x = rng.normal(size=(batch, steps, FEATURES)).astype(np.float32)
    mask = rng.random((batch, steps)) < 0.6
    (want,) = expected(x, weights, mask, "concat", True, False, True)
    np.testing.assert_allclose(layer(x, mask=mask), want, rtol=1e-5, atol=1e-5)


def test_initial_state_goes_half_to_each_direction():
    rng = np.random.default_rng(3)
    with keras_semantics("3.15.1"):
        layer, weights = build("concat", True, False, rng)
    x = rng.normal(size=(7, STEPS, FEATURES)).astype(np.float32)
    h_forward, h_backward = rng.normal(size=(2, 7, UNITS)).astype(np.float32)
    got = layer(x, initial_state=[h_forward, h_backward])
    forward = simple_rnn_by_hand(x, *weights[:3], initial=h_forward)[0]
    backward = simple_rnn_by_hand(x, *weights[3:], go_backwards=True, initial=h_backward)[0]
    np.testing.assert_allclose(got, np.concatenate([forward, backward[:, ::-1]], -1), atol=1e-5)


def test_weights_are_forward_then_backward_and_names_prefixed():
    layer = Bidirectional(LSTM(3), name="bi")
    layer.build((None, STEPS, FEATURES))
    assert [w.shape for w in layer.get_weights()] == [(3, 12), (3, 12), (12,)] * 2
    assert layer.forward_layer.name.startswith("forward_")
    assert layer.backward_layer.name.startswith("backward_")
    assert layer.backward_layer.go_backwards and not layer.forward_layer.go_backwards


def test_keras2_derived_backward_layer_flips_go_backwards():
    with keras_semantics("2.21.0"):
        layer = Bidirectional(GRU(2, go_backwards=True))
    assert layer.forward_layer.go_backwards and not layer.backward_layer.go_backwards


def test_config_round_trip_keeps_a_given_backward_layer():
    rng = np.random.default_rng(0)
    layer = Bidirectional(
        SimpleRNN(2, return_sequences=True),
        backward_layer=GRU(3, go_backwards=True, return_sequences=True),
        merge_mode="concat",
    )
    x = rng.normal(size=(4, STEPS, FEATURES)).astype(np.float32)
    layer(x)
    weights = random_weights(layer, rng)
    copy = Bidirectional.from_config(layer.get_config())
    copy(x)
    copy.set_weights(weights)
    assert isinstance(copy.backward_layer, GRU)
    np.testing.assert_array_equal(copy(x), layer(x))
    assert copy(x).shape == (4, STEPS, 5)


def masked_model(merge_mode, return_state, cell=LSTM):
    inputs = Input((STEPS, FEATURES))
    masked = Masking()(inputs)
    outputs = Bidirectional(
        cell(3, return_sequences=True, return_state=return_state), merge_mode=merge_mode
    )(masked)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    summary = Bidirectional(cell(2), merge_mode="ave")(masked)
    return Model(inputs, [*outputs, Dense(2)(summary)])


@pytest.mark.parametrize("version", ["3.15.1", "2.21.0", "2.2.4"])
@pytest.mark.parametrize(
    ("merge_mode", "return_state", "cell"),
    [("concat", False, LSTM), (None, True, LSTM), ("mul", True, GRU), ("sum", False, SimpleRNN)],
)
def test_export_matches_reference(version, merge_mode, return_state, cell):
    rng = np.random.default_rng(1)
    with keras_semantics(version):
        model = masked_model(merge_mode, return_state, cell)
        for layer in model.layers:
            if layer.weights:
                random_weights(layer, rng)
    assert_export_matches(model, lambda n: masked_sequences(rng, (n, STEPS, FEATURES)))


def test_export_with_initial_states():
    rng = np.random.default_rng(2)
    x, *states = Input((STEPS, FEATURES)), *[Input((3,)) for _ in range(4)]
    with keras_semantics("2.21.0"):
        layer = Bidirectional(LSTM(3, return_sequences=True))
        model = Model([x, *states], layer(Masking()(x), initial_state=states))
    random_weights(layer, rng)

    def inputs(n):
        return [masked_sequences(rng, (n, STEPS, FEATURES))] + [
            rng.normal(size=(n, 3)).astype(np.float32) for _ in range(4)
        ]

    assert_export_matches(model, inputs)


def test_loads_through_json_with_nested_layer_config():
    layer = Bidirectional(LSTM(2, return_sequences=True), merge_mode="sum", name="bi")
    inputs = Input((STEPS, FEATURES))
    model = Model(inputs, layer(inputs))
    copy = model_from_json(model.to_json())
    assert isinstance(copy.layers[-1].forward_layer, LSTM)
    assert copy.layers[-1].merge_mode == "sum"


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("kwargs", "error", "fragments"),
    [
        ({"layer": LSTM(2), "merge_mode": "max"}, ConfigError, ("merge_mode='max'",)),
        ({"layer": Dense(2)}, NotSupportedError, ("recurrent layers only", "Dense")),
        (
            {"layer": LSTM(2), "backward_layer": LSTM(2)},
            ConfigError,
            ("different `go_backwards`", "backward_layer.go_backwards=False"),
        ),
        (
            {"layer": LSTM(2), "backward_layer": LSTM(2, go_backwards=True, return_state=True)},
            ConfigError,
            ("same `return_state`",),
        ),
        ({"layer": "LSTM"}, ConfigError, ("`layer` to be a layer", "layer='LSTM'")),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, fragments):
    with pytest.raises(error) as raised:
        Bidirectional(**kwargs)
    for fragment in fragments:
        assert fragment in str(raised.value)


def test_keras3_refuses_a_forward_layer_running_backwards():
    with keras_semantics("3.15.1"), pytest.raises(ConfigError, match="go_backwards"):
        Bidirectional(LSTM(2, go_backwards=True))


def test_odd_number_of_initial_states_is_refused():
    layer = Bidirectional(SimpleRNN(2))
    x = np.zeros((1, STEPS, FEATURES), np.float32)
    with pytest.raises(ShapeError, match="even number of initial states"):
        layer([x, np.zeros((1, 2), np.float32)])


def test_constants_are_refused():
    with pytest.raises(NotSupportedError, match="constants"):
        Bidirectional(SimpleRNN(2))(np.zeros((1, 2, 3), np.float32), constants=[1.0])


def test_weight_penalties_are_counted_once_per_half():
    l2 = {"class_name": "L2", "config": {"l2": 0.5}}
    layer = Bidirectional(SimpleRNN(2, kernel_regularizer=l2))
    layer(np.ones((1, STEPS, FEATURES), np.float32))
    kernels = [layer.get_weights()[0], layer.get_weights()[3]]
    np.testing.assert_allclose(layer.losses, [0.5 * np.sum(k**2) for k in kernels], rtol=1e-6)
